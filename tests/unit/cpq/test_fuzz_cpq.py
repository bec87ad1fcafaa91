"""Fuzzing the CPQ metadata (`XCPQ META`): whatever an authenticated peer sends.

The property, for `cpq.metadata.decode_transfer` (the chunks as received),
`cpq.transfer.parse_transfer` and `check_json` (a decoded JSON value):
either a typed transfer the manager can store (strict JSON, UTF-8, 64-bit
integers, reading back the same) or a `MetadataError`, never another
exception, within the profile's deadline (tests/conftest.py).
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_transfer import gateway_notice, gateway_quarantine, manager_release

from pvoq.cpq.metadata import CHUNK_CHARS, MAX_CHUNKS, decode_transfer
from pvoq.cpq.transfer import MAX_INT, MetadataError, check_json, parse_transfer

BASES = [gateway_quarantine(), gateway_quarantine(trace=False), manager_release(),
         gateway_notice("extend"), gateway_notice("release"), gateway_notice("delete")]

# Strings as a JSON parser gives them: any code point, lone surrogates included ("\ud800").
any_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF,
                                 exclude_categories=()), max_size=40)
hostile_text = st.one_of(any_text, st.sampled_from(
    ["", "\x00", "a\r\nb", "\ud800", "x\udfff", "ü" * 300, "x" * 3000, "a@b", "<a@b>"]))
numbers = st.one_of(
    st.integers(), st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, -1, MAX_INT, MAX_INT + 1, 2**64, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 1e12 + 1]))
scalars = st.one_of(st.none(), st.booleans(), numbers, hostile_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(hostile_text, inner, max_size=5)),
    max_leaves=30)


def deep(depth: int, leaf: Any = 0) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside *obj* (keys and list indexes)."""
    found: list[tuple[Any, ...]] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) \
        if isinstance(obj, list) else []
    for key, value in items:
        found.append((*prefix, key))
        found.extend(paths(value, (*prefix, key)))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid transfer with a few of its fields replaced, removed or added."""
    obj = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        where = paths(obj)
        if not where:
            break
        path = draw(st.sampled_from(where))
        node = obj
        for key in path[:-1]:
            node = node[key]
        change = draw(st.sampled_from(["replace", "remove", "add", "deep"]))
        if change == "remove":
            del node[path[-1]]
        elif change == "add" and isinstance(node, dict):
            node[draw(hostile_text)] = draw(json_values)
        elif change == "deep":
            node[path[-1]] = deep(draw(st.integers(1, 200)))
        else:
            node[path[-1]] = draw(json_values)
    return obj


def assert_storable(transfer: Any) -> None:
    """What was accepted is strict JSON in UTF-8, 64-bit, and reads back the same."""
    text = json.dumps(transfer.to_json(), allow_nan=False, ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogate: every database column takes it
    again = parse_transfer(json.loads(text))
    assert again.to_json() == transfer.to_json()
    check_json(json.loads(text))


def accepted_or_refused(obj: Any) -> None:
    try:
        transfer = parse_transfer(obj)
    except MetadataError:
        return
    assert_storable(transfer)


@given(mutated())
@example(gateway_quarantine() | {"sender": "\ud800@example.org"})
@example(gateway_quarantine() | {"quarantines": [{"name": "Policy", "reason": "\udfff",
                                                  "stage": "content_filters"}]})
@example({**gateway_quarantine(), "\ud800": 1})
def test_a_mutated_transfer_is_accepted_storable_or_a_metadata_error(obj: Any) -> None:
    accepted_or_refused(obj)


@given(json_values)
def test_any_json_value_is_a_metadata_error(obj: Any) -> None:
    """Arbitrary JSON is never a transfer (it lacks `v`, `kind`, ...): MetadataError."""
    try:
        parse_transfer(obj)
    except MetadataError:
        return
    raise AssertionError(f"accepted {obj!r}")


@given(json_values)
def test_check_json_takes_any_value(obj: Any) -> None:
    try:
        check_json(obj)
    except MetadataError:
        return


# -- the wire: base64 chunks --------------------------------------------------------------

def chunked(text: str, cuts: list[int]) -> list[str]:
    """*text* cut at *cuts* (positions, any order), as a peer might send it."""
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in zip(points, points[1:], strict=False)] or [""]


def wire(obj: Any) -> str:
    return base64.b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode()


def decoded_or_refused(chunks: list[str]) -> None:
    try:
        transfer = decode_transfer(chunks)
    except MetadataError:
        return
    assert_storable(transfer)


@given(mutated(), st.lists(st.integers(min_value=0), max_size=6))
def test_a_mutated_transfer_on_the_wire_in_any_chunks(obj: Any, cuts: list[int]) -> None:
    decoded_or_refused(chunked(wire(obj), cuts))


@given(st.lists(hostile_text, max_size=8))
@example(["\u00e9"])
@example(["eyJ2IjoxfQ==", "===="])
@example(["e30"])
def test_any_chunks_are_a_metadata_error(chunks: list[str]) -> None:
    try:
        decode_transfer(chunks)
    except MetadataError:
        return
    raise AssertionError(f"accepted {chunks!r}")


@given(st.binary(max_size=2000), st.lists(st.integers(min_value=0), max_size=4))
@example(b"\xff\xfe{}", [])
@example(b'{"v":1e999}', [])
@example(b'{"v":NaN}', [])
@example(b'{"v":' + b"9" * 5000 + b"}", [])
@example(b'"\\ud800"', [])
def test_any_bytes_in_base64_are_a_metadata_error(raw: bytes, cuts: list[int]) -> None:
    text = base64.b64encode(raw).decode("ascii")
    decoded_or_refused(chunked(text, cuts))


@settings(max_examples=6)
@given(st.integers(MAX_CHUNKS // 4, MAX_CHUNKS), st.sampled_from(["[", '{"a":', '[{"a":']))
def test_deep_nesting_up_to_the_chunk_limit_is_a_metadata_error(filled: int,
                                                                 opener: str) -> None:
    """As deep as *filled* chunks can carry: refused, without a RecursionError."""
    closer = {"[": "]", '{"a":': "}", '[{"a":': "}]"}[opener]
    n = filled * CHUNK_CHARS * 3 // 4 // (len(opener) + len(closer))
    text = base64.b64encode((opener * n + "0" + closer * n).encode()).decode()
    chunks = [text[i:i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]
    assert len(chunks) <= MAX_CHUNKS + 1
    try:
        decode_transfer(chunks)
    except MetadataError as exc:
        assert "nested deeper" in str(exc)
        return
    raise AssertionError("accepted")


def test_a_lone_surrogate_is_refused_naming_the_field() -> None:
    """`"\\ud800"` decodes to a str no database column takes: 554, naming the field."""
    raw = json.dumps(gateway_quarantine() | {"sender": "\ud800@example.org"}).encode()
    try:
        decode_transfer([base64.b64encode(raw).decode()])
    except MetadataError as exc:
        assert str(exc) == "field sender is not Unicode text (a lone surrogate)"
        return
    raise AssertionError("accepted")
