"""Tests for the bounds of CPQ metadata (`cpq.transfer` limits, `cpq.metadata` decoding).

What a gateway ships must be something the manager can store, search and
release: anything outside the bounds is a MetadataError naming the field,
raised in bounded time whatever the input.
"""

from __future__ import annotations

import base64
import copy
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_transfer import edited, error_of, gateway_notice, gateway_quarantine, manager_release

from pvoq.cpq import bounds
from pvoq.cpq.metadata import CHUNK_CHARS, MAX_CHUNKS, decode_transfer
from pvoq.cpq.transfer import (
    MAX_ADDRESS,
    MAX_DEPTH,
    MAX_INT,
    MAX_NAME,
    MAX_RECIPIENTS,
    MAX_SHORT,
    MAX_TEXT,
    MetadataError,
    QuarantineRef,
    QuarantineTransfer,
    check_json,
    parse_transfer,
)


def chunks_of(raw: bytes) -> list[str]:
    text = base64.b64encode(raw).decode("ascii")
    return [text[i:i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]


def wire_error(raw: bytes) -> str:
    started = time.monotonic()
    with pytest.raises(MetadataError) as info:
        decode_transfer(chunks_of(raw))
    assert time.monotonic() - started < 2.0
    return str(info.value)


class TestDecoding:
    def test_deep_nesting_is_a_metadata_error(self) -> None:
        raw = b"[" * 100_000 + b"]" * 100_000
        assert len(chunks_of(raw)) <= MAX_CHUNKS
        assert wire_error(raw) == f"metadata is nested deeper than {MAX_DEPTH} levels"

    def test_deep_nesting_inside_an_object(self) -> None:
        raw = b'{"v":1,"x":' + b'{"a":' * 50_000 + b"0" + b"}" * 50_000 + b"}"
        assert "nested deeper" in wire_error(raw)

    def test_nesting_just_over_the_bound(self) -> None:
        raw = b'{"v":1,"x":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
        assert wire_error(raw) == f"metadata is nested deeper than {MAX_DEPTH} levels"

    @pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
    def test_nan_and_infinity_are_refused(self, constant: str) -> None:
        raw = b'{"v":1,"received":' + constant.encode() + b"}"
        assert wire_error(raw) == f"metadata holds {constant}, which is not JSON"

    def test_huge_integer_anywhere(self) -> None:
        raw = b'{"v":1,"x":[' + str(2**70).encode() + b"]}"
        assert wire_error(raw) == "field x[] is out of range (64 bits)"


class TestIntegers:
    @pytest.mark.parametrize("dotted", ["origin.mid", "origin.icid", "recipients.0.rid", "size",
                                        "quarantines.1.threat_level"])
    @pytest.mark.parametrize("value", [2**70, 2**63, -1])
    def test_out_of_range(self, dotted: str, value: int) -> None:
        name = dotted.replace(".0.", "[].").replace(".1.", "[].")
        assert error_of(edited(gateway_quarantine(), dotted, value)).startswith(
            f"field {name} is out of range")

    def test_release_entry_out_of_range(self) -> None:
        assert error_of(edited(manager_release(), "release.entry", 2**64)) == (
            "field release.entry is out of range (64 bits)")
        assert error_of(edited(manager_release(), "release.entry", -5)) == (
            f"field release.entry is out of range (0 to {MAX_INT})")

    def test_largest_accepted(self) -> None:
        transfer = parse_transfer(edited(gateway_quarantine(), "origin.mid", MAX_INT))
        assert transfer.origin.mid == MAX_INT


class TestNumbers:
    @pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 1e300])
    @pytest.mark.parametrize("dotted", ["received", "quarantines.1.retention_s"])
    def test_not_finite_or_out_of_range(self, dotted: str, value: float) -> None:
        name = dotted.replace(".1.", "[].")
        error = error_of(edited(gateway_quarantine(), dotted, value))
        assert error.startswith(f"field {name} is ")
        assert "out of range" in error or "not a finite number" in error

    def test_nan_in_an_unmodelled_key(self) -> None:
        assert error_of(edited(gateway_quarantine(), "extra_key", float("nan"))) == (
            "field extra_key is not a finite number")

    @pytest.mark.parametrize("dotted", ["rescanned_at", "retention_s"])
    def test_notice_times(self, dotted: str) -> None:
        assert error_of(edited(gateway_notice("extend"), dotted, float("inf"))) == (
            f"field {dotted} is not a finite number")


class TestStrings:
    @pytest.mark.parametrize(("dotted", "name"), [
        ("transfer_id", "transfer_id"), ("origin.hostname", "origin.hostname"),
        ("quarantines.0.reason", "quarantines[].reason"),
        ("quarantines.0.stage", "quarantines[].stage")])
    def test_a_nul_in_a_stored_text_is_refused_naming_the_field(self, dotted: str,
                                                                 name: str) -> None:
        """Those texts go to columns of their own, which PostgreSQL's text refuses with a
        NUL in them: refused here (554, never retried), not failing a whole batch."""
        assert error_of(edited(gateway_quarantine(), dotted, "gw1\x00-longer-text")) == (
            f"field {name} holds a NUL character")

    def test_long_sender(self) -> None:
        sender = "a" * 60 + "@" + "b" * 5000 + ".example"
        assert error_of(edited(gateway_quarantine(), "sender", sender)) == (
            f"field sender is longer than {MAX_ADDRESS} octets")

    def test_address_octets_not_characters(self) -> None:
        address = "ü" * 100 + "@" + "example.de"   # 111 characters, 211 octets
        assert parse_transfer(edited(gateway_quarantine(), "sender", address))
        address = "ü" * 130 + "@" + "example.de"   # 141 characters, 271 octets
        assert error_of(edited(gateway_quarantine(), "recipients.0.address", address)) == (
            f"field recipients[].address is longer than {MAX_ADDRESS} octets")

    def test_longest_address_accepted(self) -> None:
        address = "a" * 64 + "@" + "b" * (MAX_ADDRESS - 64 - 5) + ".org"
        assert len(address) == MAX_ADDRESS
        transfer = parse_transfer(edited(gateway_quarantine(), "sender", address))
        assert isinstance(transfer, QuarantineTransfer)
        assert transfer.sender == address

    def test_null_sender_accepted_empty_recipient_refused(self) -> None:
        assert parse_transfer(edited(gateway_quarantine(), "sender", "")).to_json()["sender"] == ""
        assert error_of(edited(gateway_quarantine(), "recipients.0.address", "")) == (
            "field recipients[].address is empty")

    @pytest.mark.parametrize("address", ["bob@exa\r\nmple.com", "bob\x00@example.com"])
    def test_control_characters_in_an_address(self, address: str) -> None:
        assert error_of(edited(gateway_quarantine(), "recipients.0.address", address)) == (
            "field recipients[].address is not an address")

    @pytest.mark.parametrize(("dotted", "limit"), [
        ("origin.hostname", MAX_NAME), ("origin.serial", MAX_SHORT),
        ("quarantines.0.name", MAX_NAME), ("quarantines.0.stage", MAX_SHORT)])
    def test_long_names(self, dotted: str, limit: int) -> None:
        name = dotted.replace(".0.", "[].")
        assert parse_transfer(edited(gateway_quarantine(), dotted, "x" * limit))
        assert error_of(edited(gateway_quarantine(), dotted, "x" * (limit + 1))) == (
            f"field {name} is longer than {limit} characters")

    @pytest.mark.parametrize("dotted", ["quarantines.0.reason", "quarantines.0.detail"])
    def test_long_texts_in_octets(self, dotted: str) -> None:
        name = dotted.replace(".0.", "[].")
        assert parse_transfer(edited(gateway_quarantine(), dotted, "x" * MAX_TEXT))
        assert error_of(edited(gateway_quarantine(), dotted, "ü" * (MAX_TEXT // 2 + 1))) == (
            f"field {name} is longer than {MAX_TEXT} octets")

    def test_long_notice_reason(self) -> None:
        assert error_of(edited(gateway_notice(), "reason", "x" * (MAX_TEXT + 1))) == (
            f"field reason is longer than {MAX_TEXT} octets")

    def test_what_a_gateway_builds_is_cut_to_fit(self) -> None:
        """An a/v verdict naming hundreds of viruses, a long filter source: the gateway's
        transfer still fits what the manager accepts."""
        names = " ".join(f"Win.Test.Virus-{i}" for i in range(500))
        ref = QuarantineRef(name="Virus", reason=f"a/v verdict:VIRAL {names}",
                            stage="antivirus", detail="ö" * 5000)
        assert len(ref.reason.encode()) <= MAX_TEXT and ref.reason.endswith("...")
        assert ref.reason.startswith("a/v verdict:VIRAL Win.Test.Virus-0 ")
        assert ref.detail is not None and len(ref.detail.encode()) <= MAX_TEXT
        assert QuarantineRef.from_json(ref.to_json()) == ref
        short = QuarantineRef(name="Policy", reason="content filter:x", stage="content_filters")
        assert short.reason == "content filter:x"

    def test_what_a_gateway_builds_holds_no_nul(self) -> None:
        """A NUL in a verdict's words becomes U+FFFD: the manager would refuse it."""
        ref = QuarantineRef(name="Virus", reason="a/v verdict:VIRAL Eicar\x00",
                            stage="antivirus", detail="\x00found")
        assert (ref.reason, ref.detail) == ("a/v verdict:VIRAL Eicar\ufffd", "\ufffdfound")
        assert QuarantineRef.from_json(ref.to_json()) == ref


class TestLists:
    def test_too_many_recipients(self) -> None:
        many: list[dict[str, Any]] = [{"rid": i, "address": f"u{i}@example.com"}
                                      for i in range(MAX_RECIPIENTS + 1)]
        assert error_of(edited(gateway_quarantine(), "recipients", many)) == (
            f"field recipients has more than {MAX_RECIPIENTS} items")

    def test_most_recipients_accepted(self) -> None:
        many = [{"rid": i, "address": f"u{i}@example.com"} for i in range(MAX_RECIPIENTS)]
        transfer = parse_transfer(edited(gateway_quarantine(), "recipients", many))
        assert isinstance(transfer, QuarantineTransfer)
        assert len(transfer.recipients) == MAX_RECIPIENTS


HOSTILE_VALUES: list[Any] = [
    None, True, -1, 0, 2**31, 2**63 - 1, 2**63, 2**70, -(2**64), 1.5, -0.0, 1e308,
    float("nan"), float("inf"), "", "x" * 300, "x" * 3000, "a\x00b", "a\r\nb", "ü" * 200,
    [], [[[]]], {}, {"a": [1, {"b": None}]}, ["x"] * 2000,
]


def _paths(obj: Any, prefix: str = "") -> list[str]:
    found = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) \
        if isinstance(obj, list) else []
    for key, value in items:
        path = f"{prefix}{key}"
        found.append(path)
        found.extend(_paths(value, path + "."))
    return found


@pytest.mark.parametrize("build", [gateway_quarantine, manager_release, gateway_notice])
def test_any_hostile_field_is_a_metadata_error_or_storable(build: Any) -> None:
    """Every field set to every hostile value: MetadataError, or a transfer whose JSON is
    strict (no NaN), fits 64-bit integers and reads back the same."""
    import json
    import random

    rng = random.Random(16)
    base = build()
    cases = [(p, v) for p in _paths(base) for v in HOSTILE_VALUES]
    rng.shuffle(cases)
    started = time.monotonic()
    for path, value in cases:
        obj = copy.deepcopy(base)
        *parents, last = path.split(".")
        node = obj
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value
        try:
            transfer = parse_transfer(obj)
        except MetadataError:
            continue
        text = json.dumps(transfer.to_json(), allow_nan=False)
        assert parse_transfer(json.loads(text)).to_json() == transfer.to_json()
    assert time.monotonic() - started < 30


# Any JSON value, ASCII or not, numbers of any size, nested past MAX_DEPTH now and then.
_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-2**64, max_value=2**64)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=40)


def _nested(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


@settings(max_examples=400, deadline=None)
@given(_JSON, st.sampled_from([0, 0, MAX_DEPTH - 2, MAX_DEPTH]))
def test_the_quick_pass_never_passes_what_the_whole_rule_refuses(value: Any, depth: int
                                                                   ) -> None:
    """`check_json` takes a first pass that names no field: whatever it lets through,
    the field-by-field rule lets through too, so the shortcut changes no verdict."""
    value = _nested(value, depth)
    if bounds._plainly_bounded(value):
        bounds._check_field_by_field(value)  # raises if the shortcut were wrong
    try:
        bounds._check_field_by_field(value)
    except MetadataError:
        with pytest.raises(MetadataError):
            check_json(value)
    else:
        check_json(value)
