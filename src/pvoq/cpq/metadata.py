"""The metadata a CPQ transfer carries, and its wire encoding.

The metadata is one JSON object (UTF-8), base64-encoded and cut into chunks
that fit an SMTP command line; each chunk travels as `XCPQ META <chunk>`
inside the mail transaction (after MAIL FROM, before DATA). docs/cpq.md is
the spec; `validate()` is its executable form, over the typed transfers of
`cpq.transfer`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pvoq.cpq.transfer import (
    MAX_DEPTH,
    VERSION,
    Kind,
    MetadataError,
    MigrationTransfer,
    QuarantineTransfer,
    ReleaseReceipt,
    ReleaseReceipts,
    ReleaseTransfer,
    RescanAction,
    RescanNotice,
    RescanRequest,
    Transfer,
    parse_transfer,
)

__all__ = [
    "CHUNK_CHARS", "KIND_MIGRATION", "KIND_OUTBREAK_RESCAN", "KIND_QUARANTINE", "KIND_RELEASE",
    "KIND_RELEASE_RECEIPT", "KIND_RELEASE_RECEIPTS", "MAX_CHUNKS",
    "RESCAN_ACTIONS", "VERSION", "MetadataError", "decode_chunks", "decode_transfer",
    "encode_chunks", "validate",
]

KIND_QUARANTINE = Kind.QUARANTINE
KIND_RELEASE = Kind.RELEASE
KIND_OUTBREAK_RESCAN = Kind.OUTBREAK_RESCAN  # a gateway's rescan decision on an Outbreak message
KIND_RELEASE_RECEIPT = Kind.RELEASE_RECEIPT  # a released message's outcome on its gateway
KIND_MIGRATION = Kind.MIGRATION  # a message held locally on a gateway, moved to the manager
KIND_RELEASE_RECEIPTS = Kind.RELEASE_RECEIPTS  # several release receipts in one transfer
RESCAN_ACTIONS = tuple(RescanAction)
CHUNK_CHARS = 900          # an SMTP command line stays under 1,000 octets
MAX_CHUNKS = 1024          # ~690 KB of JSON (921,600 base64 characters) at most


def encode_chunks(meta: dict[str, Any]) -> list[str]:
    raw = base64.b64encode(json.dumps(meta, separators=(",", ":"), sort_keys=True).encode())
    text = raw.decode("ascii")
    return [text[i:i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)] or [""]


def _no_constant(name: str) -> Any:
    raise MetadataError(f"metadata holds {name}, which is not JSON")


# One decoder for every transfer (`json.loads` with an argument builds a new one each call).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _decode(chunks: list[str]) -> Any:
    """The JSON value the chunks carry: at most MAX_CHUNKS of them (the listener stops
    taking more), NaN and Infinity refused, any nesting refused without a fault (the
    parser's recursion limit is a MetadataError; `transfer.check_json` bounds the rest)."""
    if not chunks:
        raise MetadataError("no XCPQ META was sent in this transaction")
    try:
        # strict: only the base64 alphabet, padded as it must be (what `validate=True`
        # refuses), without its regular expression pass first.
        raw = binascii.a2b_base64("".join(chunks), strict_mode=True)
        # As `json.loads` reads bytes (its encoding detection), with one decoder.
        return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except MetadataError:
        raise
    except RecursionError:
        raise MetadataError(f"metadata is nested deeper than {MAX_DEPTH} levels") from None
    except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise MetadataError(f"undecodable metadata ({exc})") from None


def decode_chunks(chunks: list[str]) -> dict[str, Any]:
    """The metadata object the chunks carry, as received, once validated."""
    meta = _decode(chunks)
    validate(meta)
    return meta


_CLASSES: dict[str, type[QuarantineTransfer] | type[ReleaseTransfer] | type[RescanNotice]
               | type[ReleaseReceipt] | type[RescanRequest] | type[MigrationTransfer]
               | type[ReleaseReceipts]] = {
    c.kind.value: c for c in (QuarantineTransfer, ReleaseTransfer, RescanNotice, ReleaseReceipt,
                              RescanRequest, MigrationTransfer, ReleaseReceipts)}


def decode_transfer(chunks: list[str]) -> Transfer:
    """The typed transfer the chunks carry (`cpq.transfer`).

    Read once: the class its `kind` names checks it whole (the common fields
    first, as `parse_transfer` does), instead of the common fields being checked
    to find the class and then again by it. Anything else (no object, an unknown
    kind) goes to `parse_transfer`, for its error."""
    obj = _decode(chunks)
    kind = obj.get("kind") if isinstance(obj, dict) else None
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    return cls.from_json(obj) if cls is not None else parse_transfer(obj)


def validate(meta: Any) -> Transfer:
    """Raise MetadataError unless *meta* is a well-formed version-1 object; its typed form."""
    return parse_transfer(meta)
