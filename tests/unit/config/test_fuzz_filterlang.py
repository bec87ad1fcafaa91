"""Fuzzing the filter language (pvoq.config.filterlang) with Hypothesis.

Any text gives a list of filters or a `FilterSyntaxError` (the module's
documented error, an `Invalid`), never another exception, within the
deadline; its line and column fall inside the text.
"""

from __future__ import annotations

from configfuzz import budget
from hypothesis import given
from hypothesis import strategies as st

from pvoq.config.filterlang import (
    ACTIONS,
    BUILTIN_QUARANTINES,
    CONTAINS,
    SIZE_FIELDS,
    STRING_FIELDS,
    FilterSyntaxError,
    parse_filters,
)

TEMPLATE_FILTER = 'no_exe: if (attachment-filename == "\\\\.(exe|scr|pif)$") { quarantine("Policy"); }'
REGEX = st.one_of(st.sampled_from(["\\.exe$", "(", "[a-", "a{2,1}", "(?P<x>a)(?P<x>b)", "\\",
                                   "(?i)x", "a" * 300, "(a|b)*c", "\\p{L}", "(?<=a+)b"]),
                  st.text(max_size=20))


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


TOKEN = st.one_of(
    st.sampled_from(["if", "else", "and", "or", "not", "true", "false", "header", "remote-ip",
                     "(", ")", "{", "}", ":", ";", ",", "==", "!=", "<", "<=", ">", ">=",
                     "10", "10k", "5M", "1G", "9" * 30, "0", "#c\n", "\n", "name", "f1", "f2",
                     "'single'", '"unterminated', "٣", "1x"]),
    st.sampled_from(STRING_FIELDS + SIZE_FIELDS + CONTAINS + tuple(ACTIONS)),
    REGEX.map(quoted),
    st.sampled_from(["10.0.0.0/8", "::1", "10.0.0.1, 10.0.0.2", "300.1.1.1", "x"]).map(quoted),
    st.sampled_from([*BUILTIN_QUARANTINES, "Nope"]).map(quoted))
CONDITION = st.recursive(
    st.one_of(
        st.builds(lambda f, op, r: f"{f} {op} {r}", st.sampled_from(STRING_FIELDS),
                  st.sampled_from(["==", "!="]), REGEX.map(quoted)),
        st.builds(lambda f, op, n: f"{f} {op} {n}", st.sampled_from(SIZE_FIELDS),
                  st.sampled_from(["<", ">", "==", ">="]),
                  st.sampled_from(["10", "5M", "1" + "0" * 25, "7g"])),
        st.builds(lambda h, r: f"header({h}) == {r}", REGEX.map(quoted), REGEX.map(quoted)),
        st.sampled_from(["true", "false", 'remote-ip == "10.0.0.0/8"',
                         'body-contains("x")', 'header("X-Spam")'])),
    lambda inner: st.one_of(inner.map(lambda c: f"not {c}"), inner.map(lambda c: f"({c})"),
                            st.tuples(inner, st.sampled_from(["and", "or"]), inner)
                            .map(" ".join)),
    max_leaves=8)
ACTION = st.one_of(
    st.builds(lambda a, args: f"{a}({', '.join(args)});", st.sampled_from(sorted(ACTIONS)),
              st.lists(st.one_of(REGEX.map(quoted),
                                 st.sampled_from([*BUILTIN_QUARANTINES, "Nope"]).map(quoted)),
                       max_size=3)),
    st.sampled_from(['quarantine("Policy");', "drop();", "unknown();", "bounce()"]))
FILTER = st.builds(
    lambda name, cond, acts, other: f"{name}: if {cond} {{ {' '.join(acts)} }}"
    + (f" else {{ {' '.join(other)} }}" if other is not None else ""),
    st.sampled_from(["f1", "f2", "no_exe", "a.b-c", "1bad"]), CONDITION,
    st.lists(ACTION, max_size=3), st.none() | st.lists(ACTION, max_size=2))
TEXT = st.one_of(
    st.lists(FILTER, max_size=4).map("\n".join),
    st.lists(TOKEN, max_size=40).map(" ".join),
    st.text(max_size=300),
    st.builds(lambda a, b: TEMPLATE_FILTER[:a] + b + TEMPLATE_FILTER[a:],
              st.integers(0, len(TEMPLATE_FILTER)), st.text(max_size=10)),
    st.integers(1, 400).map(lambda n: "deep: if " + "(" * n + "true" + ")" * n + " { drop(); }"),
    st.integers(1, 400).map(lambda n: "deep: if " + "not " * n + "true { drop(); }"))


@budget(300)
@given(text=TEXT, known=st.none() | st.just(tuple(BUILTIN_QUARANTINES)))
def test_any_text_is_filters_or_a_filter_syntax_error(
        text: str, known: tuple[str, ...] | None) -> None:
    try:
        filters = parse_filters(text, quarantines=known)
    except FilterSyntaxError as exc:
        assert 1 <= exc.line <= text.count("\n") + 1
        assert exc.column >= 1
        assert str(exc).startswith(f"line {exc.line}, column {exc.column}: ")
        return
    assert len({f.name for f in filters}) == len(filters)


def test_deep_nesting_is_a_syntax_error_not_a_recursion_error() -> None:
    """10,000 parentheses or `not`s raised RecursionError."""
    for text in ("deep: if " + "(" * 10_000 + "true" + ")" * 10_000 + " { drop(); }",
                 "deep: if " + "not " * 10_000 + "true { drop(); }"):
        try:
            parse_filters(text)
        except FilterSyntaxError as exc:
            assert exc.message == "conditions nested more than 64 deep"
        else:
            raise AssertionError("accepted")


def test_a_size_of_thirty_digits_is_a_syntax_error() -> None:
    """int() of a huge size was unchecked; 5,000 digits raised ValueError."""
    for digits in ("1" + "0" * 30, "9" * 5000):
        try:
            parse_filters(f"big: if body-size > {digits} {{ drop(); }}")
        except FilterSyntaxError as exc:
            assert exc.column == 21 and "is too large" in exc.message
        else:
            raise AssertionError("accepted")
