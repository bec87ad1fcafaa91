"""The filter language: message and content filters in AsyncOS message-filter syntax.

Owns the grammar, its parser and the syntax tree; parse errors carry the
line and column (1-based, within the filter text) of the offending token.
A filter reads

    no_exe: if (attachment-filename == "\\.exe$") { quarantine("Policy"); }
    big:    if body-size > 5M and not sendergroup == "RELAYLIST" { bounce(); }
            else { insert-header("X-Scanned", "yes"); }

Grammar (keywords case-insensitive)::

    filters   := (NAME ':' 'if' cond '{' action* '}' ['else' '{' action* '}'] [';'])*
    cond      := conj ('or' conj)*
    conj      := unary ('and' unary)*
    unary     := 'not' unary | '(' cond ')' | test
    test      := 'true' | 'false'
               | STRFIELD ('==' | '!=') STRING          -- regex search
               | 'header' '(' STRING ')' [('==' | '!=') STRING]
               | 'remote-ip' ('==' | '!=') STRING        -- address or CIDR, comma-separated
               | ('body-contains' | 'attachment-contains') '(' STRING ')'
               | SIZEFIELD ('<' | '<=' | '>' | '>=' | '==' | '!=') SIZE   -- 10, 10k, 5M
    action    := NAME '(' [STRING (',' STRING)*] ')' ';'

String fields: subject, mail-from, rcpt-to, attachment-filename,
attachment-type, sendergroup. Size fields: body-size (the whole message),
attachment-size (any attachment). Strings take single or double quotes;
`\\"`, `\\'` and `\\\\` are escapes, any other backslash is kept, so a regex
reads as written. `#` starts a comment outside strings.

Conditions nest (`not`, parentheses) at most `MAX_NESTING` deep and a size
is at most `MAX_SIZE` bytes: beyond, a `FilterSyntaxError` like any other.

This module is pure: no I/O, no pvoq imports but the exception root
(`pvoq.errors`); evaluation is `scan.filters`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum

from pvoq.errors import Invalid

STRING_FIELDS = ("subject", "mail-from", "rcpt-to", "attachment-filename", "attachment-type",
                 "sendergroup")
SIZE_FIELDS = ("body-size", "attachment-size")
CONTAINS = ("body-contains", "attachment-contains")
# action name -> (number of string arguments, final?)
ACTIONS: dict[str, tuple[int, bool]] = {
    "quarantine": (1, True),
    "duplicate-quarantine": (1, False),
    "drop": (0, True),
    "bounce": (0, True),
    "deliver": (0, True),
    "skip-filters": (0, True),
    "insert-header": (2, False),
    "strip-header": (1, False),
    "strip-attachment-by-name": (1, False),
}
REGEX_ACTIONS = ("strip-attachment-by-name",)


class BuiltinQuarantine(StrEnum):
    """The quarantines that always exist (AsyncOS's); mail for an unknown one goes to
    `UNCLASSIFIED`. Defined here, once: `quarantine.states` re-exports it."""

    POLICY = "Policy"
    VIRUS = "Virus"
    OUTBREAK = "Outbreak"
    UNCLASSIFIED = "Unclassified"


BUILTIN_QUARANTINES: tuple[BuiltinQuarantine, ...] = tuple(BuiltinQuarantine)

_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
MAX_SIZE = 2**63 - 1
"""The largest size a comparison may name (in bytes, after its unit)."""
MAX_NESTING = 64
"""How deep `not` and parentheses may nest in one condition."""
_COMPARE = ("<=", ">=", "==", "!=", "<", ">")


class FilterSyntaxError(Invalid, ValueError):
    """A filter text that does not parse, or refers to what does not exist."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column


# -- syntax tree ---------------------------------------------------------------
@dataclass(frozen=True)
class Const:
    value: bool


@dataclass(frozen=True)
class Match:
    """A string field (or one header) searched with a regex; `negate` for `!=`."""

    field: str
    pattern: re.Pattern[str]
    negate: bool = False
    header: str = ""


@dataclass(frozen=True)
class HeaderExists:
    header: str


@dataclass(frozen=True)
class IpMatch:
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    negate: bool = False


@dataclass(frozen=True)
class Contains:
    where: str  # body-contains | attachment-contains
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    value: int


@dataclass(frozen=True)
class Not:
    item: Condition


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Any_:
    items: tuple[Condition, ...]


Condition = Const | Match | HeaderExists | IpMatch | Contains | Compare | Not | All | Any_


@dataclass(frozen=True)
class Action:
    name: str
    args: tuple[str, ...]
    line: int
    column: int
    pattern: re.Pattern[str] | None = None

    @property
    def final(self) -> bool:
        return ACTIONS[self.name][1]

    def __str__(self) -> str:
        return f"{self.name}({', '.join(repr(a) for a in self.args)})"


@dataclass(frozen=True)
class Filter:
    name: str
    condition: Condition
    actions: tuple[Action, ...]
    else_actions: tuple[Action, ...] = ()
    line: int = 0
    source: str = field(default="", compare=False)

    def quarantines(self) -> list[Action]:
        return [a for a in (*self.actions, *self.else_actions)
                if a.name in ("quarantine", "duplicate-quarantine")]


# -- lexer ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
    kind: str   # NAME, STRING, NUMBER, OP, EOF
    text: str
    line: int
    column: int


_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+|\#[^\n]*)
  | (?P<NUMBER>[0-9]+[kKmMgG]?(?![\w-]))
  | (?P<NAME>[A-Za-z_][A-Za-z0-9_.-]*)
  | (?P<OP><=|>=|==|!=|[<>(){}:;,])
  | (?P<quote>["'])
""", re.VERBOSE)


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        column = pos - line_start + 1
        if m is None:
            raise FilterSyntaxError(f"unexpected character {text[pos]!r}", line, column)
        kind = m.lastgroup or ""
        if kind == "quote":
            value, end = _string(text, pos, line, column)
            tokens.append(_Token("STRING", value, line, column))
            pos = end
            continue
        if kind != "space":
            tokens.append(_Token(kind, m.group(), line, column))
        for i, ch in enumerate(m.group()):
            if ch == "\n":
                line, line_start = line + 1, pos + i + 1
        pos = m.end()
    tokens.append(_Token("EOF", "", line, pos - line_start + 1))
    return tokens


def _string(text: str, start: int, line: int, column: int) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\n":
            break
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(nxt if nxt in ("\\", '"', "'") else ch + nxt)
            i += 2
            continue
        if ch == quote:
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise FilterSyntaxError("unterminated string", line, column)


# -- parser --------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines()
        self.tokens = _lex(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def error(self, message: str, tok: _Token | None = None) -> FilterSyntaxError:
        tok = tok or self.tok
        return FilterSyntaxError(message, tok.line, tok.column)

    def _found(self) -> str:
        return "end of text" if self.tok.kind == "EOF" else repr(self.tok.text)

    def advance(self) -> _Token:
        tok = self.tok
        self.i += 1
        return tok

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "NAME" and self.tok.text.lower() in words

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "OP" and self.tok.text in ops

    def expect_op(self, op: str) -> _Token:
        if not self.is_op(op):
            raise self.error(f"expected {op!r}, found {self._found()}")
        return self.advance()

    def expect_string(self, what: str) -> _Token:
        if self.tok.kind != "STRING":
            raise self.error(f"expected a quoted {what}, found {self._found()}")
        return self.advance()

    def regex(self, tok: _Token) -> re.Pattern[str]:
        try:
            return re.compile(tok.text)
        except re.error as exc:
            raise self.error(f"bad regular expression {tok.text!r} ({exc})", tok) from None

    # filters := filter*
    def filters(self) -> list[Filter]:
        result: list[Filter] = []
        names: set[str] = set()
        while self.tok.kind != "EOF":
            start = self.tok
            f = self.filter()
            if f.name in names:
                raise self.error(f"duplicate filter name {f.name!r}", start)
            names.add(f.name)
            result.append(f)
        return result

    def filter(self) -> Filter:
        name = self.tok
        if name.kind != "NAME":
            raise self.error(f"expected a filter name, found {self._found()}")
        self.advance()
        self.expect_op(":")
        if not self.is_word("if"):
            raise self.error(f"expected 'if', found {self._found()}")
        self.advance()
        condition = self.cond()
        actions = self.block()
        else_actions: tuple[Action, ...] = ()
        if self.is_word("else"):
            self.advance()
            else_actions = self.block()
        if self.is_op(";"):
            self.advance()
        end = self.tokens[self.i - 1]
        source = "\n".join(self.lines[name.line - 1:end.line])
        return Filter(name.text, condition, actions, else_actions, name.line, source.strip())

    def block(self) -> tuple[Action, ...]:
        self.expect_op("{")
        actions: list[Action] = []
        while not self.is_op("}"):
            if self.tok.kind == "EOF":
                raise self.error("expected '}' before end of text")
            actions.append(self.action())
        self.advance()
        return tuple(actions)

    def action(self) -> Action:
        tok = self.tok
        if tok.kind != "NAME" or tok.text.lower() not in ACTIONS:
            raise self.error(f"unknown action {tok.text!r} (known: {', '.join(ACTIONS)})")
        name = tok.text.lower()
        self.advance()
        self.expect_op("(")
        args: list[_Token] = []
        while not self.is_op(")"):
            if args:
                self.expect_op(",")
            args.append(self.expect_string("argument"))
        self.advance()
        self.expect_op(";")
        wanted = ACTIONS[name][0]
        if len(args) != wanted:
            raise self.error(f"{name}() takes {wanted} argument{'s' if wanted != 1 else ''}, "
                             f"got {len(args)}", tok)
        pattern = self.regex(args[0]) if name in REGEX_ACTIONS else None
        return Action(name, tuple(a.text for a in args), tok.line, tok.column, pattern)

    def cond(self) -> Condition:
        items = [self.conj()]
        while self.is_word("or"):
            self.advance()
            items.append(self.conj())
        return items[0] if len(items) == 1 else Any_(tuple(items))

    def conj(self) -> Condition:
        items = [self.unary()]
        while self.is_word("and"):
            self.advance()
            items.append(self.unary())
        return items[0] if len(items) == 1 else All(tuple(items))

    def unary(self) -> Condition:
        if not self.is_word("not") and not self.is_op("("):
            return self.test()
        if self.depth >= MAX_NESTING:
            raise self.error(f"conditions nested more than {MAX_NESTING} deep")
        self.depth += 1
        try:
            if self.is_word("not"):
                self.advance()
                return Not(self.unary())
            self.advance()
            inner = self.cond()
            self.expect_op(")")
            return inner
        finally:
            self.depth -= 1

    def test(self) -> Condition:
        tok = self.tok
        word = tok.text.lower() if tok.kind == "NAME" else ""
        if word in ("true", "false"):
            self.advance()
            return Const(word == "true")
        if word in STRING_FIELDS:
            self.advance()
            negate = self.equality()
            return Match(word, self.regex(self.expect_string("regular expression")), negate)
        if word == "header":
            self.advance()
            self.expect_op("(")
            header = self.expect_string("header name").text
            self.expect_op(")")
            if not self.is_op("==", "!="):
                return HeaderExists(header)
            negate = self.equality()
            return Match("header", self.regex(self.expect_string("regular expression")),
                         negate, header)
        if word == "remote-ip":
            self.advance()
            negate = self.equality()
            value = self.expect_string("address or CIDR")
            try:
                nets = tuple(ipaddress.ip_network(v.strip(), strict=False)
                             for v in value.text.split(",") if v.strip())
            except ValueError as exc:
                raise self.error(f"bad address {value.text!r} ({exc})", value) from None
            return IpMatch(nets, negate)
        if word in CONTAINS:
            self.advance()
            self.expect_op("(")
            pattern = self.regex(self.expect_string("regular expression"))
            self.expect_op(")")
            return Contains(word, pattern)
        if word in SIZE_FIELDS:
            self.advance()
            if not self.is_op(*_COMPARE):
                raise self.error(f"expected a comparison after {word}, found {self._found()}")
            op = self.advance().text
            if self.tok.kind != "NUMBER":
                raise self.error(f"expected a size (10, 10k, 5M), found {self._found()}")
            size = self.tok
            raw = self.advance().text
            unit = raw[-1].lower() if raw[-1].isalpha() else ""
            digits = raw[:-1] if unit else raw
            number = int(digits) * _SIZE_UNITS[unit] if len(digits) <= 19 else MAX_SIZE + 1
            if number > MAX_SIZE:
                raise self.error(f"size {raw} is too large (at most {MAX_SIZE} bytes)", size)
            return Compare(word, op, number)
        raise self.error(f"unknown condition {tok.text or self._found()!r}")

    def equality(self) -> bool:
        if not self.is_op("==", "!="):
            raise self.error(f"expected '==' or '!=', found {self._found()}")
        return self.advance().text == "!="


def parse_filters(text: str, *, quarantines: tuple[str, ...] | None = None) -> list[Filter]:
    """Parse a filter text; with *quarantines*, refuse any quarantine not in it."""
    filters = _Parser(text).filters()
    if quarantines is not None:
        known = {q.lower() for q in quarantines}
        for f in filters:
            for a in f.quarantines():
                if a.args[0].lower() not in known:
                    raise FilterSyntaxError(
                        f"filter {f.name!r}: unknown quarantine {a.args[0]!r} "
                        f"(known: {', '.join(quarantines)})", a.line, a.column)
    return filters
