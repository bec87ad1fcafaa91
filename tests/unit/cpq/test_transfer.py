"""Tests for pvoq.cpq.transfer: the typed CPQ transfers, their validation and JSON form.

The wire examples are built key for key the way the gateway (quarantine
transfer, `Verdict.metadata()` entries, `scan_trace`), the manager (release
transfer, which copies `origin` and `quarantines` from the stored quarantine
transfer) and the outbreak rescan (`scan.rescan.notice`) build them.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from pvoq.cpq.metadata import (
    KIND_OUTBREAK_RESCAN,
    KIND_QUARANTINE,
    KIND_RELEASE,
    KIND_RELEASE_RECEIPT,
    RESCAN_ACTIONS,
    decode_chunks,
    decode_transfer,
    encode_chunks,
    validate,
)
from pvoq.cpq.transfer import (
    VERSION,
    Kind,
    MetadataError,
    Origin,
    QuarantineRef,
    QuarantineTransfer,
    ReleasePart,
    ReleaseTransfer,
    RescanAction,
    RescanNotice,
    TraceStep,
    TransferRecipient,
    parse_transfer,
)


def gateway_quarantine(*, trace: bool = True) -> dict[str, Any]:
    """A quarantine transfer as the gateway builds it (two verdicts, with the scan trace)."""
    meta: dict[str, Any] = {
        "v": 1, "kind": "quarantine",
        "transfer_id": "q-GW1-SN-42-0123456789ab",
        "origin": {"hostname": "gw1.example.com", "serial": "GW1-SN", "mid": 42,
                   "icid": 7, "peer": "192.0.2.10"},
        "sender": "alice@example.org",
        "recipients": [{"rid": 0, "address": "bob@example.com"},
                       {"rid": 1, "address": "carol@example.com"}],
        "quarantines": [
            {"name": "Policy", "reason": "content filter:confidential_subject",
             "stage": "content_filters", "detail": ""},
            {"name": "Outbreak", "reason": "VOF rule:OF-2026-1", "stage": "outbreak_filters",
             "detail": "VOF rule:OF-2026-1", "retention_s": 86400.0, "threat_level": 4},
        ],
        "received": 1700000000.25, "size": 1234,
    }
    if trace:
        meta["scan_trace"] = [
            {"stage": "antivirus", "outcome": "pass", "hits": [], "misses": ["clean"]},
            {"stage": "outbreak_filters", "outcome": "quarantine",
             "hits": ["OF-2026-1"], "misses": []},
        ]
    return meta


def manager_release(*, copy_to: str | None = None) -> dict[str, Any]:
    """A release transfer as the manager builds it from the stored quarantine transfer."""
    meta = gateway_quarantine()
    recipients = meta["recipients"] if copy_to is None else [{"rid": 0, "address": copy_to}]
    return {
        "v": 1, "kind": "release",
        "transfer_id": "r-MGR-SN-5",
        "origin": meta["origin"], "sender": meta["sender"],
        "recipients": recipients, "quarantines": meta["quarantines"],
        "received": meta["received"], "size": meta["size"],
        "release": {"entry": 5, "stages": [q["stage"] for q in meta["quarantines"]],
                    "quarantines": ["Policy", "Outbreak"],
                    **({} if copy_to is None else {"copy_of": 4})},
    }


def gateway_notice(action: str = "extend") -> dict[str, Any]:
    """An outbreak rescan notice as `scan.rescan.notice` builds it."""
    meta: dict[str, Any] = {
        "v": 1, "kind": "outbreak_rescan",
        "transfer_id": "o-GW1-SN-42-0123456789ab",
        "origin": {"hostname": "gw1.example.com", "serial": "GW1-SN", "mid": 42},
        "quarantine_transfer_id": "q-GW1-SN-42-0123456789ab",
        "quarantine": "Outbreak", "action": action,
        "reason": "VOF rule:OF-2026-1 threat level 4 still matches (subject)",
        "rules_version": "2026-11-30.1", "rescanned_at": 1700003600.5,
    }
    if action == "extend":
        meta["retention_s"] = 172800.0
    return meta


WIRE = {
    "quarantine": gateway_quarantine(),
    "quarantine-without-trace": gateway_quarantine(trace=False),
    "release": manager_release(),
    "release-copy": manager_release(copy_to="dave@example.com"),
    "rescan-release": gateway_notice("release"),
    "rescan-extend": gateway_notice("extend"),
    "rescan-delete": gateway_notice("delete"),
}


def error_of(obj: Any, reader: Any = parse_transfer) -> str:
    with pytest.raises(MetadataError) as info:
        reader(obj)
    return str(info.value)


def edited(meta: dict[str, Any], dotted: str, value: Any = ..., ) -> dict[str, Any]:
    """A deep copy of *meta* with the field at *dotted* set to *value* (removed if omitted)."""
    result = copy.deepcopy(meta)
    *parents, last = dotted.split(".")
    node: Any = result
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return result


class TestRoundTrip:
    @pytest.mark.parametrize("name", WIRE)
    def test_wire_to_type_to_wire(self, name: str) -> None:
        """to_json(from_json(wire)) is the wire object, key for key."""
        wire = WIRE[name]
        assert parse_transfer(copy.deepcopy(wire)).to_json() == wire

    @pytest.mark.parametrize("name", WIRE)
    def test_same_json_text(self, name: str) -> None:
        """And the same JSON text, key order included (what the stores keep)."""
        wire = WIRE[name]
        assert json.dumps(parse_transfer(wire).to_json()) == json.dumps(wire)

    @pytest.mark.parametrize("name", WIRE)
    def test_type_to_wire_to_type(self, name: str) -> None:
        """from_json(to_json(x)) == x."""
        value = parse_transfer(WIRE[name])
        assert type(value).from_json(value.to_json()) == value

    @pytest.mark.parametrize("name", WIRE)
    def test_through_the_chunks(self, name: str) -> None:
        """decode_transfer reads what encode_chunks wrote; decode_chunks keeps the dict."""
        chunks = encode_chunks(WIRE[name])
        assert decode_transfer(chunks) == parse_transfer(WIRE[name])
        assert decode_chunks(chunks) == WIRE[name]

    @pytest.mark.parametrize("name", WIRE)
    def test_enums_are_plain_strings_on_the_wire(self, name: str) -> None:
        """`kind` and `action` come out as the plain strings they are."""
        out = parse_transfer(WIRE[name]).to_json()
        assert type(out["kind"]) is str
        assert type(out.get("action", "")) is str

    def test_built_value(self) -> None:
        """A transfer built in code gives the object the gateway sends."""
        wire = gateway_quarantine()
        built = QuarantineTransfer(
            transfer_id="q-GW1-SN-42-0123456789ab",
            origin=Origin("gw1.example.com", "GW1-SN", 42, icid=7, peer="192.0.2.10"),
            sender="alice@example.org",
            recipients=(TransferRecipient(0, "bob@example.com"),
                        TransferRecipient(1, "carol@example.com")),
            quarantines=(
                QuarantineRef("Policy", "content filter:confidential_subject",
                              "content_filters", detail=""),
                QuarantineRef("Outbreak", "VOF rule:OF-2026-1", "outbreak_filters",
                              detail="VOF rule:OF-2026-1", retention_s=86400.0,
                              threat_level=4)),
            received=1700000000.25, size=1234,
            scan_trace=(TraceStep("antivirus", "pass", (), ("clean",)),
                        TraceStep("outbreak_filters", "quarantine", ("OF-2026-1",), ())))
        assert built.to_json() == wire
        assert parse_transfer(wire) == built

    def test_built_release_and_notice(self) -> None:
        """Release transfers and rescan notices built in code match the wire too."""
        release = parse_transfer(manager_release())
        assert isinstance(release, ReleaseTransfer)
        assert release.release == ReleasePart(5, ("content_filters", "outbreak_filters"),
                                              ("Policy", "Outbreak"))
        notice = RescanNotice(
            transfer_id="o-GW1-SN-42-0123456789ab",
            origin=Origin("gw1.example.com", "GW1-SN", 42),
            quarantine_transfer_id="q-GW1-SN-42-0123456789ab", quarantine="Outbreak",
            action=RescanAction.EXTEND,
            reason="VOF rule:OF-2026-1 threat level 4 still matches (subject)",
            rescanned_at=1700003600.5, retention_s=172800.0, rules_version="2026-11-30.1")
        assert notice.to_json() == gateway_notice("extend")
        assert parse_transfer(gateway_notice("extend")) == notice

    @pytest.mark.parametrize("name", WIRE)
    def test_values_are_frozen_and_hashable(self, name: str) -> None:
        """Transfers are immutable values: usable as keys, not changed in place."""
        value = parse_transfer(WIRE[name])
        assert hash(value) == hash(parse_transfer(copy.deepcopy(WIRE[name])))
        with pytest.raises(AttributeError):
            value.transfer_id = "x"  # type: ignore[misc]

    def test_optional_keys_left_out(self) -> None:
        """Absent optional fields stay absent (the minimal objects docs/cpq.md allows)."""
        origin = {"hostname": "h", "serial": "s", "mid": 1}
        ref = {"name": "Policy", "reason": "r", "stage": "s"}
        assert Origin.from_json(origin).to_json() == origin
        assert QuarantineRef.from_json(ref).to_json() == ref
        assert ReleasePart.from_json({"entry": 1, "stages": []}).to_json() == {
            "entry": 1, "stages": []}
        notice = gateway_notice("delete")
        del notice["rules_version"]
        assert parse_transfer(notice).to_json() == notice

    def test_integers_stay_integers(self) -> None:
        """`received: 1700000000` comes back an int, not 1700000000.0."""
        wire = edited(gateway_quarantine(), "received", 1700000000)
        assert json.dumps(parse_transfer(wire).to_json()) == json.dumps(wire)


class TestSendCopy:
    def test_a_copy_names_the_held_message(self) -> None:
        """`release.copy_of`: a Send Copy of a message the manager still holds."""
        copy_ = parse_transfer(manager_release(copy_to="dave@example.com"))
        assert isinstance(copy_, ReleaseTransfer) and copy_.release.copy_of == 4
        release = parse_transfer(manager_release())
        assert isinstance(release, ReleaseTransfer) and release.release.copy_of is None
        assert "copy_of" not in release.to_json()["release"]

    def test_copy_of_out_of_range_is_refused(self) -> None:
        wire = edited(manager_release(copy_to="dave@example.com"), "release.copy_of", 2**63)
        assert "release.copy_of" in error_of(wire)


class TestUnknownKeys:
    def test_unknown_keys_survive(self) -> None:
        """Keys this side does not model are kept, at every level, and written back."""
        wire = gateway_quarantine()
        wire["future"] = {"a": 1}
        wire["origin"]["zone"] = "eu"
        wire["recipients"][0]["orcpt"] = "rfc822;bob@example.com"
        wire["quarantines"][0]["rule_id"] = 9
        value = parse_transfer(wire)
        assert value.extra == {"future": {"a": 1}}
        assert value.origin.extra == {"zone": "eu"}
        assert value.to_json() == wire
        release = manager_release()
        release["release"]["note"] = "x"
        assert parse_transfer(release).to_json() == release

    def test_optional_field_of_another_type_is_kept_as_received(self) -> None:
        """validate() never checked optional fields: one of another type is carried as is."""
        for dotted, value in [("quarantines.0.detail", 3), ("quarantines.1.threat_level", "4"),
                              ("origin.icid", None), ("scan_trace", "none"),
                              ("scan_trace", [{"stage": 1}])]:
            wire = edited(gateway_quarantine(), dotted, value)
            parsed = parse_transfer(wire)
            assert parsed.to_json() == wire
        parsed = parse_transfer(edited(gateway_quarantine(), "scan_trace", "none"))
        assert isinstance(parsed, QuarantineTransfer) and parsed.scan_trace is None
        wire = edited(manager_release(), "release.quarantines", [1])
        assert parse_transfer(wire).to_json() == wire


class TestDispatch:
    @pytest.mark.parametrize(("name", "cls"), [("quarantine", QuarantineTransfer),
                                               ("release", ReleaseTransfer),
                                               ("rescan-extend", RescanNotice)])
    def test_parse_transfer_by_kind(self, name: str, cls: type) -> None:
        """parse_transfer reads each kind into its class; validate does the same."""
        assert type(parse_transfer(WIRE[name])) is cls
        assert type(validate(WIRE[name])) is cls

    def test_reader_of_another_kind_refuses(self) -> None:
        """A class reads only its own kind."""
        assert "quarantine" in error_of(manager_release(), QuarantineTransfer.from_json)
        assert "release" in error_of(gateway_quarantine(), ReleaseTransfer.from_json)
        assert "outbreak_rescan" in error_of(gateway_quarantine(), RescanNotice.from_json)

    def test_enums(self) -> None:
        """The kinds and actions are string enums, equal to their wire strings."""
        assert [str(k) for k in Kind] == ["quarantine", "release", "outbreak_rescan",
                                       "release_receipt", "release_receipts", "rescan_request",
                                       "migration"]
        assert tuple(Kind)[:4] == (KIND_QUARANTINE, KIND_RELEASE, KIND_OUTBREAK_RESCAN,
                                   KIND_RELEASE_RECEIPT)
        assert KIND_RELEASE == "release" and json.dumps(KIND_RELEASE) == '"release"'
        assert RESCAN_ACTIONS == ("release", "extend", "delete") == tuple(RescanAction)
        notice = parse_transfer(gateway_notice("delete"))
        assert isinstance(notice, RescanNotice) and notice.action is RescanAction.DELETE
        assert VERSION == 1


MISSING_COMMON = ["v", "kind", "transfer_id", "origin", "origin.hostname", "origin.serial",
                  "origin.mid"]
MISSING_MESSAGE = ["sender", "recipients", "recipients.0.rid", "recipients.0.address",
                   "quarantines", "quarantines.0.name", "quarantines.0.reason",
                   "quarantines.0.stage", "received", "size"]
MISSING_RESCAN = ["quarantine_transfer_id", "quarantine", "action", "reason", "rescanned_at",
                  "retention_s"]


def field_name(dotted: str) -> str:
    parts = dotted.split(".")
    return f"{parts[0]}[].{parts[2]}" if len(parts) == 3 else dotted


class TestValidation:
    @pytest.mark.parametrize("dotted", MISSING_COMMON + MISSING_MESSAGE)
    def test_missing_in_quarantine(self, dotted: str) -> None:
        assert error_of(edited(gateway_quarantine(), dotted)) == (
            f"missing field {field_name(dotted)}")

    @pytest.mark.parametrize("dotted", [*MISSING_COMMON, *MISSING_MESSAGE, "release",
                                        "release.entry", "release.stages"])
    def test_missing_in_release(self, dotted: str) -> None:
        assert error_of(edited(manager_release(), dotted)) == (
            f"missing field {field_name(dotted)}")

    @pytest.mark.parametrize("dotted", MISSING_COMMON + MISSING_RESCAN)
    def test_missing_in_notice(self, dotted: str) -> None:
        assert error_of(edited(gateway_notice("extend"), dotted)) == f"missing field {dotted}"

    def test_retention_only_required_to_extend(self) -> None:
        """`retention_s` is required for `extend` only."""
        assert parse_transfer(gateway_notice("release")).to_json() == gateway_notice("release")
        assert isinstance(parse_transfer(gateway_notice("delete")), RescanNotice)

    @pytest.mark.parametrize(("dotted", "value"), [
        ("v", "1"), ("v", True), ("kind", 1), ("transfer_id", 12345678), ("origin", "gw1"),
        ("origin.hostname", None), ("origin.serial", 7), ("origin.mid", "42"),
        ("origin.mid", False), ("sender", None), ("recipients", {"rid": 0}),
        ("recipients.0.rid", "0"), ("recipients.0.address", ["b@example.com"]),
        ("quarantines", "Policy"), ("quarantines.0.name", 1), ("quarantines.0.reason", None),
        ("quarantines.0.stage", 3), ("received", "yesterday"), ("received", True),
        ("size", 1.5)])
    def test_wrong_type(self, dotted: str, value: Any) -> None:
        assert error_of(edited(gateway_quarantine(), dotted, value)) == (
            f"field {field_name(dotted)} has the wrong type")

    @pytest.mark.parametrize(("dotted", "value"), [
        ("release", [5]), ("release.entry", "5"), ("release.stages", "content_filters")])
    def test_wrong_type_release(self, dotted: str, value: Any) -> None:
        assert error_of(edited(manager_release(), dotted, value)) == (
            f"field {dotted} has the wrong type")

    @pytest.mark.parametrize(("dotted", "value"), [
        ("quarantine_transfer_id", 1), ("quarantine", None), ("action", 2), ("reason", []),
        ("rescanned_at", "now"), ("retention_s", "2d")])
    def test_wrong_type_notice(self, dotted: str, value: Any) -> None:
        assert error_of(edited(gateway_notice("extend"), dotted, value)) == (
            f"field {dotted} has the wrong type")

    def test_release_stages_must_be_strings(self) -> None:
        assert error_of(edited(manager_release(), "release.stages", [1])) == (
            "release.stages[] must be strings")

    @pytest.mark.parametrize("value", [[], "text", 3, None])
    def test_not_an_object(self, value: Any) -> None:
        assert error_of(value) == "metadata is not a JSON object"
        for cls in (QuarantineTransfer, ReleaseTransfer, RescanNotice):
            assert error_of(value, cls.from_json) == "metadata is not a JSON object"

    def test_wrong_version(self) -> None:
        assert error_of(edited(gateway_quarantine(), "v", 2)) == (
            "unsupported metadata version 2 (this side speaks 1)")

    def test_unknown_kind(self) -> None:
        assert error_of(edited(gateway_quarantine(), "kind", "forward")) == (
            "unknown kind 'forward'")

    @pytest.mark.parametrize("length", [7, 129])
    def test_transfer_id_length(self, length: int) -> None:
        assert error_of(edited(gateway_notice(), "transfer_id", "t" * length)) == (
            "transfer_id must be 8 to 128 characters")

    @pytest.mark.parametrize("length", [8, 128])
    def test_transfer_id_length_limits(self, length: int) -> None:
        assert parse_transfer(edited(gateway_quarantine(), "transfer_id", "t" * length))

    def test_no_recipients(self) -> None:
        assert error_of(edited(manager_release(), "recipients", [])) == "recipients is empty"

    def test_recipient_not_an_object(self) -> None:
        assert error_of(edited(gateway_quarantine(), "recipients", ["b@example.com"])) == (
            "recipients[] must be objects")

    def test_quarantine_transfer_names_a_quarantine(self) -> None:
        assert error_of(edited(gateway_quarantine(), "quarantines", [])) == (
            "a quarantine transfer names at least one quarantine")

    def test_release_may_name_no_quarantine(self) -> None:
        wire = edited(manager_release(), "quarantines", [])
        assert parse_transfer(wire).to_json() == wire

    def test_quarantine_not_an_object(self) -> None:
        assert error_of(edited(gateway_quarantine(), "quarantines", ["Policy"])) == (
            "quarantines[] must be objects")

    def test_unknown_rescan_action(self) -> None:
        assert error_of(edited(gateway_notice(), "action", "forward")) == (
            "unknown rescan action 'forward'")

    def test_part_readers_refuse_non_objects(self) -> None:
        """The part readers refuse what is not an object, naming the part."""
        assert error_of([], Origin.from_json) == "origin is not a JSON object"
        assert error_of("x", ReleasePart.from_json) == "release is not a JSON object"
        assert error_of(1, TransferRecipient.from_json) == "recipients[] must be objects"
        assert error_of(1, QuarantineRef.from_json) == "quarantines[] must be objects"
