"""Tests for pvoq.cpq.metadata: the XCPQ META encoding and its validation."""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

import pytest

from pvoq.cpq import transfer as transfer_module
from pvoq.cpq.metadata import (
    CHUNK_CHARS,
    KIND_QUARANTINE,
    KIND_RELEASE,
    VERSION,
    MetadataError,
    decode_chunks,
    decode_transfer,
    encode_chunks,
    validate,
)
from pvoq.cpq.transfer import QuarantineTransfer, parse_transfer


def quarantine_meta(**changes: Any) -> dict[str, Any]:
    """A valid quarantine-transfer metadata object, with top-level *changes* applied."""
    meta: dict[str, Any] = {
        "v": VERSION,
        "kind": KIND_QUARANTINE,
        "transfer_id": "gw1-SN-000042-abcdef",
        "origin": {"hostname": "gw1.example.com", "serial": "GW1-SN", "mid": 42},
        "sender": "alice@example.org",
        "recipients": [{"rid": 0, "address": "bob@example.com"},
                       {"rid": 1, "address": "carol@example.com"}],
        "quarantines": [{"name": "Policy", "reason": "content filter:confidential_subject",
                         "stage": "content_filters"}],
        "received": 1700000000.5,
        "size": 1234,
    }
    meta.update(changes)
    return meta


def release_meta(**changes: Any) -> dict[str, Any]:
    """A valid release-transfer metadata object, with top-level *changes* applied."""
    meta = quarantine_meta(kind=KIND_RELEASE, quarantines=[],
                           release={"entry": 7, "stages": ["content_filters"]})
    meta.update(changes)
    return meta


def without(meta: dict[str, Any], dotted: str) -> dict[str, Any]:
    """A deep copy of *meta* with the field at *dotted* (`origin.mid`, `recipients.0.rid`) removed."""
    result = copy.deepcopy(meta)
    *parents, last = dotted.split(".")
    node: Any = result
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    del node[last]
    return result


def replaced(meta: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of *meta* with the field at *dotted* set to *value*."""
    result = copy.deepcopy(meta)
    *parents, last = dotted.split(".")
    node: Any = result
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return result


def error_of(meta: Any) -> str:
    with pytest.raises(MetadataError) as info:
        validate(meta)
    return str(info.value)


class TestEncoding:
    def test_round_trip(self) -> None:
        """decode_chunks(encode_chunks(meta)) gives the same object back."""
        meta = quarantine_meta()
        assert decode_chunks(encode_chunks(meta)) == meta

    def test_release_round_trip(self) -> None:
        """A release transfer round-trips too."""
        meta = release_meta()
        assert decode_chunks(encode_chunks(meta)) == meta

    def test_large_metadata_is_chunked(self) -> None:
        """Large metadata is cut into several chunks, none over the chunk size."""
        recipients = [{"rid": i, "address": f"user{i}@example.com"} for i in range(300)]
        meta = quarantine_meta(recipients=recipients)
        chunks = encode_chunks(meta)
        assert len(chunks) > 1
        assert all(0 < len(c) <= CHUNK_CHARS for c in chunks)
        assert decode_chunks(chunks) == meta

    def test_chunks_fit_an_smtp_line(self) -> None:
        """`XCPQ META <chunk>` plus CRLF stays under the 1,000-octet SMTP line limit."""
        meta = quarantine_meta(sender="x" * 5000 + "@example.org")
        assert all(len(f"XCPQ META {c}\r\n".encode()) <= 1000 for c in encode_chunks(meta))

    def test_chunks_are_plain_base64(self) -> None:
        """The joined chunks are base64 of the JSON object, UTF-8 included."""
        meta = quarantine_meta(sender="jürgen@example.de")
        decoded = json.loads(base64.b64decode("".join(encode_chunks(meta))).decode("utf-8"))
        assert decoded == meta

    def test_no_chunks(self) -> None:
        """A transaction without any XCPQ META is refused."""
        with pytest.raises(MetadataError, match="XCPQ META"):
            decode_chunks([])

    def test_bad_base64(self) -> None:
        """Chunks that are not base64 are refused as undecodable."""
        with pytest.raises(MetadataError, match="undecodable"):
            decode_chunks(["not*base64!"])

    def test_base64_of_non_json(self) -> None:
        """Valid base64 of something that is not JSON is refused."""
        with pytest.raises(MetadataError, match="undecodable"):
            decode_chunks([base64.b64encode(b"\xff\xfe{not json").decode()])

    def test_decode_validates(self) -> None:
        """decode_chunks validates what it decoded."""
        with pytest.raises(MetadataError, match="sender"):
            decode_chunks(encode_chunks(without(quarantine_meta(), "sender")))

    def test_reordered_chunks_fail(self) -> None:
        """Chunks out of order do not decode to the original metadata."""
        chunks = encode_chunks(quarantine_meta(sender="y" * 3000 + "@example.org"))
        assert len(chunks) >= 3
        with pytest.raises(MetadataError):
            decode_chunks([chunks[1], chunks[0], *chunks[2:]])


MISSING = ["v", "kind", "transfer_id", "origin", "origin.hostname", "origin.serial",
           "origin.mid", "sender", "recipients", "recipients.0.rid", "recipients.0.address",
           "quarantines", "quarantines.0.name", "quarantines.0.reason", "quarantines.0.stage",
           "received", "size"]

WRONG_TYPE = [("v", "1"), ("kind", 1), ("transfer_id", 12345678), ("origin", "gw1"),
              ("origin.hostname", None), ("origin.serial", 7), ("origin.mid", "42"),
              ("sender", None), ("recipients", {"rid": 0}), ("recipients.0.rid", "0"),
              ("recipients.0.address", ["b@example.com"]), ("quarantines", "Policy"),
              ("quarantines.0.name", 1), ("quarantines.0.reason", None),
              ("quarantines.0.stage", 3), ("received", "yesterday"), ("size", 1.5)]


def field_name(dotted: str) -> str:
    """The name the validator uses for *dotted*: `recipients.0.rid` → `recipients[].rid`."""
    parts = dotted.split(".")
    if len(parts) == 3:
        return f"{parts[0]}[].{parts[2]}"
    return dotted


class TestValidate:
    def test_valid_quarantine(self) -> None:
        """A complete quarantine transfer validates."""
        validate(quarantine_meta())

    def test_valid_release(self) -> None:
        """A complete release transfer validates, even without quarantines."""
        validate(release_meta())

    @pytest.mark.parametrize("dotted", MISSING)
    def test_missing_field(self, dotted: str) -> None:
        """Each required field, when missing, is named in the error."""
        message = error_of(without(quarantine_meta(), dotted))
        assert "missing" in message and field_name(dotted) in message

    @pytest.mark.parametrize(("dotted", "value"), WRONG_TYPE)
    def test_wrong_type(self, dotted: str, value: Any) -> None:
        """Each field of the wrong type is named in the error."""
        message = error_of(replaced(quarantine_meta(), dotted, value))
        assert "wrong type" in message and field_name(dotted) in message

    @pytest.mark.parametrize("dotted", ["release", "release.entry", "release.stages"])
    def test_release_fields_required(self, dotted: str) -> None:
        """A release transfer needs its release entry and stages."""
        message = error_of(without(release_meta(), dotted))
        assert "missing" in message and dotted in message

    def test_release_stages_must_be_strings(self) -> None:
        """release.stages holds stage names only."""
        assert "release.stages" in error_of(replaced(release_meta(), "release.stages", [1]))

    def test_wrong_version(self) -> None:
        """A version other than this side's is refused, naming both."""
        message = error_of(quarantine_meta(v=VERSION + 1))
        assert "version" in message and str(VERSION + 1) in message

    def test_unknown_kind(self) -> None:
        """A kind other than quarantine or release is refused."""
        assert "'forward'" in error_of(quarantine_meta(kind="forward"))

    @pytest.mark.parametrize("length", [7, 129])
    def test_transfer_id_length(self, length: int) -> None:
        """A transfer_id shorter than 8 or longer than 128 characters is refused."""
        assert "transfer_id" in error_of(quarantine_meta(transfer_id="t" * length))

    @pytest.mark.parametrize("length", [8, 128])
    def test_transfer_id_length_limits(self, length: int) -> None:
        """A transfer_id of 8 or 128 characters is accepted."""
        validate(quarantine_meta(transfer_id="t" * length))

    def test_no_recipients(self) -> None:
        """A transfer without recipients is refused."""
        assert "recipients" in error_of(quarantine_meta(recipients=[]))

    def test_recipient_not_an_object(self) -> None:
        """Recipients must be objects."""
        assert "recipients" in error_of(quarantine_meta(recipients=["bob@example.com"]))

    def test_quarantine_transfer_names_a_quarantine(self) -> None:
        """A quarantine transfer with an empty quarantine list is refused."""
        assert "quarantine" in error_of(quarantine_meta(quarantines=[]))

    def test_quarantine_not_an_object(self) -> None:
        """Quarantines must be objects."""
        assert "quarantines" in error_of(quarantine_meta(quarantines=["Policy"]))

    @pytest.mark.parametrize("value", [[], "text", 3, None])
    def test_not_an_object(self, value: Any) -> None:
        """Metadata that is not a JSON object is refused."""
        assert "object" in error_of(value)


class TestDecodeTransfer:
    def test_the_metadata_is_checked_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The common fields are checked by the class the kind names, not also before."""
        checked: list[Any] = []
        real = transfer_module.check_json
        monkeypatch.setattr(transfer_module, "check_json",
                            lambda obj: checked.append(obj) or real(obj))
        got = decode_transfer(encode_chunks(quarantine_meta()))
        assert isinstance(got, QuarantineTransfer) and got.transfer_id == "gw1-SN-000042-abcdef"
        assert len(checked) == 1

    @pytest.mark.parametrize("obj", [
        {"v": 1, "kind": ["quarantine"]}, {"v": 2, "kind": "quarantine"},
        {"v": 1, "kind": "nope"}, {"kind": "quarantine"}, {"v": 1},
        quarantine_meta(transfer_id="short"), quarantine_meta(kind=KIND_RELEASE),
        quarantine_meta(recipients=[]),
    ])
    def test_refusals_are_those_of_parse_transfer(self, obj: dict[str, Any]) -> None:
        with pytest.raises(MetadataError) as expected:
            parse_transfer(obj)
        with pytest.raises(MetadataError, match=re.escape(str(expected.value))):
            decode_transfer(encode_chunks(obj))
