"""The metadata a CPQ transfer carries, and its wire encoding.

The metadata is one JSON object (UTF-8), base64-encoded and cut into chunks
that fit an SMTP command line; each chunk travels as `XCPQ META <chunk>`
inside the mail transaction (after MAIL FROM, before DATA). docs/cpq.md is
the spec; `validate()` is its executable form.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pvoq.errors import ProtocolError

VERSION = 1
KIND_QUARANTINE = "quarantine"
KIND_RELEASE = "release"
KIND_OUTBREAK_RESCAN = "outbreak_rescan"  # a gateway's rescan decision on an Outbreak message
RESCAN_ACTIONS = ("release", "extend", "delete")
CHUNK_CHARS = 900          # an SMTP command line stays under 1,000 octets
MAX_CHUNKS = 1024          # ~690 KB of JSON (921,600 base64 characters) at most


class MetadataError(ProtocolError, ValueError):
    """The metadata of a transfer is missing, malformed or of an unknown version."""


def encode_chunks(meta: dict[str, Any]) -> list[str]:
    raw = base64.b64encode(json.dumps(meta, separators=(",", ":"), sort_keys=True).encode())
    text = raw.decode("ascii")
    return [text[i:i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]


def decode_chunks(chunks: list[str]) -> dict[str, Any]:
    if not chunks:
        raise MetadataError("no XCPQ META was sent in this transaction")
    try:
        meta = json.loads(base64.b64decode("".join(chunks), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise MetadataError(f"undecodable metadata ({exc})") from None
    validate(meta)
    return meta


def _require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise MetadataError(f"missing field {where}{key}")
    if isinstance(obj[key], bool) and kind is not bool:  # JSON true is not a number
        raise MetadataError(f"field {where}{key} has the wrong type")
    if not isinstance(obj[key], kind):
        raise MetadataError(f"field {where}{key} has the wrong type")
    return obj[key]


def validate(meta: Any) -> None:
    """Raise MetadataError unless *meta* is a well-formed version-1 object."""
    if not isinstance(meta, dict):
        raise MetadataError("metadata is not a JSON object")
    version = _require(meta, "v", int, "")
    if version != VERSION:
        raise MetadataError(f"unsupported metadata version {version} (this side speaks {VERSION})")
    kind = _require(meta, "kind", str, "")
    if kind not in (KIND_QUARANTINE, KIND_RELEASE, KIND_OUTBREAK_RESCAN):
        raise MetadataError(f"unknown kind {kind!r}")
    transfer_id = _require(meta, "transfer_id", str, "")
    if not 8 <= len(transfer_id) <= 128:
        raise MetadataError("transfer_id must be 8 to 128 characters")
    origin = _require(meta, "origin", dict, "")
    _require(origin, "hostname", str, "origin.")
    _require(origin, "serial", str, "origin.")
    _require(origin, "mid", int, "origin.")
    if kind == KIND_OUTBREAK_RESCAN:
        _validate_rescan(meta)
        return
    _require(meta, "sender", str, "")
    recipients = _require(meta, "recipients", list, "")
    if not recipients:
        raise MetadataError("recipients is empty")
    for r in recipients:
        if not isinstance(r, dict):
            raise MetadataError("recipients[] must be objects")
        _require(r, "rid", int, "recipients[].")
        _require(r, "address", str, "recipients[].")
    quarantines = _require(meta, "quarantines", list, "")
    if kind == KIND_QUARANTINE and not quarantines:
        raise MetadataError("a quarantine transfer names at least one quarantine")
    for q in quarantines:
        if not isinstance(q, dict):
            raise MetadataError("quarantines[] must be objects")
        _require(q, "name", str, "quarantines[].")
        _require(q, "reason", str, "quarantines[].")
        _require(q, "stage", str, "quarantines[].")
    _require(meta, "received", (int, float), "")
    _require(meta, "size", int, "")
    if kind == KIND_RELEASE:
        release = _require(meta, "release", dict, "")
        _require(release, "entry", int, "release.")
        stages = _require(release, "stages", list, "release.")
        if not all(isinstance(s, str) for s in stages):
            raise MetadataError("release.stages[] must be strings")


def _validate_rescan(meta: dict[str, Any]) -> None:
    """An outbreak rescan notice: which quarantined message, and what to do with it."""
    _require(meta, "quarantine_transfer_id", str, "")
    _require(meta, "quarantine", str, "")
    action = _require(meta, "action", str, "")
    if action not in RESCAN_ACTIONS:
        raise MetadataError(f"unknown rescan action {action!r}")
    _require(meta, "reason", str, "")
    _require(meta, "rescanned_at", (int, float), "")
    if action == "extend":
        _require(meta, "retention_s", (int, float), "")
