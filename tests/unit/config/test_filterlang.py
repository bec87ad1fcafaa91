"""Tests for pvoq.config.filterlang: parsing the filter language, and error positions."""

from __future__ import annotations

import pytest

from pvoq.config.filterlang import (
    BUILTIN_QUARANTINES,
    All,
    Any_,
    Compare,
    Const,
    Contains,
    FilterSyntaxError,
    HeaderExists,
    IpMatch,
    Match,
    Not,
    parse_filters,
)


def error_of(text: str, **kw: object) -> FilterSyntaxError:
    with pytest.raises(FilterSyntaxError) as info:
        parse_filters(text, **kw)  # type: ignore[arg-type]
    return info.value


class TestParse:
    def test_issue_example(self) -> None:
        """The AsyncOS-style example parses into one filter with one quarantine action."""
        (f,) = parse_filters('no_exe: if (attachment-filename == "\\\\.exe$") '
                             '{ quarantine("Policy"); }')
        assert f.name == "no_exe"
        assert isinstance(f.condition, Match)
        assert f.condition.field == "attachment-filename"
        assert f.condition.pattern.pattern == "\\.exe$"
        assert [(a.name, a.args) for a in f.actions] == [("quarantine", ("Policy",))]

    def test_backslash_kept_in_regex(self) -> None:
        """A single backslash before a regex character is kept as written."""
        (f,) = parse_filters('x: if subject == "\\d+ \\.pdf" { drop(); }')
        assert isinstance(f.condition, Match) and f.condition.pattern.pattern == "\\d+ \\.pdf"

    def test_precedence_not_and_or(self) -> None:
        """`not` binds tighter than `and`, which binds tighter than `or`."""
        (f,) = parse_filters('p: if not true and false or true { deliver(); }')
        assert f.condition == Any_((All((Not(Const(True)), Const(False))), Const(True)))

    def test_parentheses_group(self) -> None:
        """Parentheses override precedence."""
        (f,) = parse_filters('p: if true and (false or true) { deliver(); }')
        assert f.condition == All((Const(True), Any_((Const(False), Const(True)))))

    def test_every_condition_kind(self) -> None:
        """Each condition of the language parses into its node."""
        text = '''
        c: if subject == "a" and header("X-A") and header('X-B') != "b"
              and body-contains("c") and attachment-contains("d")
              and attachment-type == "e" and attachment-size > 10k and body-size <= 5M
              and mail-from == "f" and rcpt-to == "g" and remote-ip == "10.0.0.0/8, 192.0.2.1"
              and sendergroup == "RELAYLIST" and TRUE
        { deliver(); }
        '''
        (f,) = parse_filters(text)
        assert isinstance(f.condition, All)
        kinds = [type(c) for c in f.condition.items]
        assert kinds == [Match, HeaderExists, Match, Contains, Contains, Match, Compare, Compare,
                         Match, Match, IpMatch, Match, Const]
        sizes = [c for c in f.condition.items if isinstance(c, Compare)]
        assert [(c.op, c.value) for c in sizes] == [(">", 10 * 1024), ("<=", 5 * 1024 * 1024)]
        negated = f.condition.items[2]
        assert isinstance(negated, Match) and negated.negate and negated.header == "X-B"

    def test_every_action(self) -> None:
        """Each action parses with its arguments; final and non-final are told apart."""
        text = '''a: if true {
            duplicate-quarantine("Policy"); insert-header("X-Scan", "yes");
            strip-header("X-Old"); strip-attachment-by-name("\\.exe$");
            skip-filters();
        } else { bounce(); }
        b: if true { drop(); } c: if true { deliver(); } d: if true { quarantine("Virus"); }'''
        a, b, c, d = parse_filters(text)
        assert [x.name for x in a.actions] == ["duplicate-quarantine", "insert-header",
                                               "strip-header", "strip-attachment-by-name",
                                               "skip-filters"]
        assert [x.final for x in a.actions] == [False, False, False, False, True]
        assert [x.name for x in a.else_actions] == ["bounce"]
        assert [f.actions[0].name for f in (b, c, d)] == ["drop", "deliver", "quarantine"]

    def test_comments_and_semicolons(self) -> None:
        """`#` comments and a trailing semicolon after a filter are accepted."""
        filters = parse_filters("# first\nx: if true { deliver(); }; # done\ny: if false {}")
        assert [f.name for f in filters] == ["x", "y"]

    def test_source_is_kept(self) -> None:
        """A filter remembers its source text (shown as the quarantine's detail)."""
        (f,) = parse_filters('\nx: if subject == "hi"\n  { drop(); }\n')
        assert f.source == 'x: if subject == "hi"\n  { drop(); }'
        assert f.line == 2


class TestErrors:
    @pytest.mark.parametrize(("text", "line", "column", "words"), [
        ('x: if subject = "a" { drop(); }', 1, 15, "unexpected character"),
        ('x: if subject == a { drop(); }', 1, 18, "quoted regular expression"),
        ('x if true { drop(); }', 1, 3, "expected ':'"),
        ('x: when true { drop(); }', 1, 4, "expected 'if'"),
        ('x: if true {\n  drop();\n  explode();\n}', 3, 3, "unknown action 'explode'"),
        ('x: if true {\n  quarantine();\n}', 2, 3, "takes 1 argument"),
        ('x: if true { drop() }', 1, 21, "expected ';'"),
        ('x: if colour == "red" { drop(); }', 1, 7, "unknown condition"),
        ('x: if subject == "(" { drop(); }', 1, 18, "bad regular expression"),
        ('x: if remote-ip == "10.0.0.300" { drop(); }', 1, 20, "bad address"),
        ('x: if body-size > big { drop(); }', 1, 19, "expected a size"),
        ('x: if true {\n drop();', 2, 9, "expected '}'"),
        ('x: if subject == "abc { drop(); }', 1, 18, "unterminated string"),
        ('x: if true { drop(); }\nx: if true { drop(); }', 2, 1, "duplicate filter name"),
    ])
    def test_error_names_line_and_column(self, text: str, line: int, column: int,
                                         words: str) -> None:
        """A syntax error names the line and column of the offending token."""
        err = error_of(text)
        assert (err.line, err.column) == (line, column), err
        assert words in err.message
        assert str(err).startswith(f"line {line}, column {column}: ")

    def test_unknown_quarantine_is_refused(self) -> None:
        """A filter naming a quarantine that does not exist is refused, at its action."""
        err = error_of('ok: if true { quarantine("Policy"); }\n'
                       'bad: if true {\n    duplicate-quarantine("Bulk");\n}',
                       quarantines=BUILTIN_QUARANTINES)
        assert (err.line, err.column) == (3, 5)
        assert "unknown quarantine 'Bulk'" in err.message

    def test_custom_quarantine_is_accepted(self) -> None:
        """A quarantine in the known list (case-insensitive) is accepted."""
        (f,) = parse_filters('b: if true { quarantine("bulk"); }',
                             quarantines=(*BUILTIN_QUARANTINES, "Bulk"))
        assert f.quarantines()[0].args == ("bulk",)
