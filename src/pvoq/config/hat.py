"""Host access table (HAT) and recipient access table (RAT), AsyncOS grammar.

This module owns the text grammar of a listener's ``<hat>`` block (mail-flow
policies and sender groups), the validation of ``<rat>`` entries handed over by
the XML loader, and the two lookups: which mail-flow policy applies to a
connecting host, and whether a recipient is accepted. Everything here is a pure
function of its arguments: this module must never do I/O (no files, no DNS, no
clock). Parse errors raise :class:`ConfigError` whose ``line`` is the file line,
computed as ``first_line`` plus the 0-based line index inside the given text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pvoq.config.errors import ConfigError

__all__ = [
    "ACTIONS", "Hat", "HatDecision", "MailFlowPolicy", "Rat", "RatEntry", "SenderGroup",
    "make_rat", "match_hat", "match_rat", "names_hosts", "parse_hat",
]

ACTIONS = frozenset({"RELAY", "ACCEPT", "REJECT", "TCPREFUSE", "CONTINUE"})
_INT_PARAMS = {"max_msg_size": 2**30, "max_rcpts_per_msg": 100_000,
               "max_concurrency": 100_000, "max_conn_per_ip": 100_000}
"""The policy parameters that are whole numbers, and the largest each may be (from 1)."""
_TLS_VALUES = ("off", "preferred", "required")

_IP = ipaddress.IPv4Address | ipaddress.IPv6Address
_Matcher = Callable[[tuple[_IP, ...], str | None], bool]

_POLICY_NAME = re.compile(r"\$[A-Za-z_]\w*")
_GROUP_HEADER = re.compile(r"([A-Za-z_][\w.-]*):")
_POLICY_LINE = re.compile(r"(\$[A-Za-z_]\w*)(?:\s*\((.*)\))?")
_ACTION_LINE = re.compile(r"([A-Za-z]+)\s*(.*)")
_PARAM = re.compile(r'\s*([A-Za-z_][\w.-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s",{}=]+)\s*,?')
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}", re.IGNORECASE)
_UNBRACED = re.compile(r'(?:[^"{}]|"(?:[^"\\]|\\.)*")*')  # up to a brace or bad quote
_OCTET_RANGE = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3})-(\d{1,3})")


@dataclass(frozen=True)
class MailFlowPolicy:
    """A named mail-flow policy: what to do with a connection, and its limits."""

    name: str
    action: str
    params: Mapping[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))


_IMPLICIT_BLOCKED = MailFlowPolicy("$BLOCKED", "REJECT", {})


@dataclass(frozen=True)
class SenderGroup:
    """A named list of hosts sharing one mail-flow policy (``ALL`` is the catch-all)."""

    name: str
    members: tuple[str, ...]
    policy: str
    comment: str
    line: int
    _matchers: tuple[_Matcher, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        fld = f"hat.{self.name}"
        compiled = tuple(_compile_member(m, fld, self.line) for m in self.members)
        object.__setattr__(self, "_matchers", compiled)


@dataclass(frozen=True)
class Hat:
    """A parsed host access table; ``groups`` are tried in order, first match wins."""

    policies: Mapping[str, MailFlowPolicy]
    groups: tuple[SenderGroup, ...]
    text: str


@dataclass(frozen=True)
class HatDecision:
    """The outcome of :func:`match_hat` for one connecting host."""

    action: str
    policy: MailFlowPolicy
    group: str
    rule: str


def _error(message: str, fld: str, line: int | None) -> ConfigError:
    return ConfigError(message, field=fld, line=line)


def _is_hostname(text: str) -> bool:
    """True for a valid DNS name whose top label has a letter (so 10.1.1.20-10 is not one)."""
    return bool(_DOMAIN.fullmatch(text)) and re.search(r"[a-z]", text.rsplit(".", 1)[-1]) is not None


def _compile_ip(tok: str) -> _Matcher | None:
    """Compile an address, CIDR or range; None when *tok* is not IP-shaped at all."""
    if "/" in tok:
        try:
            net = ipaddress.ip_network(tok)
        except ValueError:
            return None
        return lambda addrs, _host: any(a in net for a in addrs)
    m = _OCTET_RANGE.fullmatch(tok)
    if m:
        tok = f"{m[1]}-{m[1].rsplit('.', 1)[0]}.{m[2]}"
    try:
        if "-" in tok:
            lo_s, _, hi_s = tok.partition("-")
            lo, hi = ipaddress.ip_address(lo_s), ipaddress.ip_address(hi_s)
        else:
            lo = hi = ipaddress.ip_address(tok)
    except ValueError:
        return None
    if lo.version != hi.version or lo > hi:  # type: ignore[operator]
        return None
    return lambda addrs, _host: any(a.version == lo.version and lo <= a <= hi  # type: ignore[operator]
                                    for a in addrs)


def _compile_member(tok: str, fld: str, line: int | None) -> _Matcher:
    """Turn one sender-group member, as written, into a matcher (or raise)."""
    if tok.upper() == "ALL":
        return lambda _addrs, _host: True
    matcher = _compile_ip(tok)
    if matcher is not None:
        return matcher
    name = tok.lower()
    if name.startswith(".") and _is_hostname(name[1:]):
        return lambda _addrs, host: host is not None and host.endswith(name)
    if _is_hostname(name):
        return lambda _addrs, host: host == name
    raise _error(f"malformed sender group member {tok!r} (expected an IP address, CIDR, "
                 "IP range, hostname, .partial.domain or ALL)", fld, line)


def _validate_param(key: str, value: str, fld: str, line: int) -> str:
    if key in _INT_PARAMS:
        top = _INT_PARAMS[key]
        if not (value.isascii() and value.isdecimal()) or not 1 <= int(value[:12]) <= top \
                or len(value) > 12:
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise _error(f"{key} must be a positive integer, not {shown!r} (from 1 to {top})",
                         f"{fld}.{key}", line)
        return str(int(value))
    if key == "tls":
        if value.lower() not in _TLS_VALUES:
            raise _error(f"tls must be one of {', '.join(_TLS_VALUES)}, not {value!r}",
                         f"{fld}.{key}", line)
        return value.lower()
    return value


def _parse_params(first: tuple[int, str], rest: list[tuple[int, str]],
                  fld: str) -> tuple[dict[str, str], int]:
    """Parse ``{ key = value ... }`` starting on *first*; return params and lines used."""
    open_line, tail = first
    if not tail:
        return {}, 1
    if not tail.startswith("{"):
        what = "unbalanced '}'" if "}" in tail else f"unexpected text {tail!r} after the action"
        raise _error(what, fld, open_line)
    params: dict[str, str] = {}
    segments = [(open_line, tail[1:])] + rest
    for used, (line, text) in enumerate(segments, start=1):
        end = _UNBRACED.match(text).end()  # type: ignore[union-attr]
        stop, body = text[end:end + 1], text[:end]
        if stop in ('"', "{"):
            what = "unterminated quote" if stop == '"' else "nested '{'"
            raise _error(f"{what} in policy parameters", fld, line)
        pos = 0
        while body[pos:].strip():
            m = _PARAM.match(body, pos)
            if not m:
                raise _error(f"malformed parameter near {body[pos:].strip()!r} "
                             "(expected key = value)", fld, line)
            key, value = m[1], m[2]
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            if key in params:
                raise _error(f"duplicate parameter {key!r}", f"{fld}.{key}", line)
            params[key] = _validate_param(key, value, fld, line)
            pos = m.end()
        if stop == "}":
            if text[end + 1:].strip():
                raise _error("unexpected text after '}'", fld, line)
            return params, used
    raise _error("unbalanced '{': no closing '}'", fld, open_line)


def _parse_policy(name: str, line: int, rest: list[tuple[int, str]]) -> MailFlowPolicy:
    fld = f"hat.{name}"
    if not rest:
        raise _error(f"policy {name} has no action line (e.g. 'ACCEPT {{}}')", fld, line)
    action_line, body = rest[0]
    m = _ACTION_LINE.fullmatch(body)
    action = m[1].upper() if m else ""
    if not m or action not in ACTIONS:
        raise _error(f"unknown action {body.split()[0]!r} (expected one of "
                     f"{', '.join(sorted(ACTIONS))})", fld, action_line)
    params, used = _parse_params((action_line, m[2].strip()), rest[1:], fld)
    if used < len(rest):
        raise _error(f"unexpected line in policy {name}: {rest[used][1]!r}", fld, rest[used][0])
    return MailFlowPolicy(name, action, params)


def _parse_group(name: str, line: int,
                 rest: list[tuple[int, str]]) -> tuple[SenderGroup, int]:
    """Parse a sender group block; return the group and its policy line."""
    fld = f"hat.{name}"
    members: list[str] = []
    policy: tuple[str, str, int] | None = None
    for ln, body in rest:
        if body.startswith("$"):
            m = _POLICY_LINE.fullmatch(body)
            if not m:
                raise _error(f"malformed policy line {body!r} (expected '$POLICY (comment)')",
                             fld, ln)
            if policy is not None:
                raise _error(f"sender group {name} has more than one policy line", fld, ln)
            policy = (m[1], (m[2] or "").strip(), ln)
            continue
        if name == "ALL":
            raise _error("the ALL catch-all takes no members, only a policy line", fld, ln)
        for tok in filter(None, re.split(r"[\s,]+", body)):
            _compile_member(tok, fld, ln)
            members.append(tok)
    if policy is None:
        raise _error(f"sender group {name} has no policy line (e.g. '$ACCEPTED')", fld, line)
    group = SenderGroup(name, ("ALL",) if name == "ALL" else tuple(members), policy[0],
                        policy[1], line)
    return group, policy[2]


def parse_hat(text: str, *, first_line: int = 1) -> Hat:
    """Parse the text of a listener's ``<hat>`` element into a :class:`Hat`.

    Top-level lines (the least-indented ones) are ``$NAME`` policy definitions,
    ``NAME:`` sender groups and the ``ALL`` catch-all; the lines indented under
    them belong to them. Blank lines and ``#`` comments are ignored.
    """
    lines = [(first_line + i, raw.expandtabs().rstrip())
             for i, raw in enumerate(text.splitlines())]
    lines = [(n, s) for n, s in lines if s.strip() and not s.lstrip().startswith("#")]
    base = min((len(s) - len(s.lstrip()) for _, s in lines), default=0)
    blocks: list[tuple[int, str, list[tuple[int, str]]]] = []
    for n, s in lines:
        body = s.strip()
        if len(s) - len(body) > base or (body.startswith("}") and blocks):
            if not blocks:
                raise _error(f"indented line {body!r} has no parent", "hat", n)
            blocks[-1][2].append((n, body))
        else:
            blocks.append((n, body, []))
    policies: dict[str, MailFlowPolicy] = {}
    groups: list[SenderGroup] = []
    references: list[tuple[SenderGroup, int]] = []
    for n, head, rest in blocks:
        header = _GROUP_HEADER.fullmatch(head)
        name = "ALL" if head == "ALL" else header[1] if header else ""
        if _POLICY_NAME.fullmatch(head):
            if head in policies:
                raise _error(f"duplicate policy {head}", f"hat.{head}", n)
            policies[head] = _parse_policy(head, n, rest)
        elif name:
            if header and name.upper() == "ALL":
                raise _error("ALL is reserved for the catch-all; write 'ALL' without ':'",
                             f"hat.{name}", n)
            if any(g.name == name for g in groups):
                raise _error(f"duplicate sender group {name}", f"hat.{name}", n)
            group, policy_line = _parse_group(name, n, rest)
            groups.append(group)
            references.append((group, policy_line))
        else:
            raise _error(f"unrecognised line {head!r} (expected '$POLICY', 'GROUP:' or 'ALL')",
                         "hat", n)
    for group, policy_line in references:
        if group.policy not in policies:
            raise _error(f"policy {group.policy} is not defined", f"hat.{group.name}",
                         policy_line)
    return Hat(MappingProxyType(policies), tuple(groups), text)


def match_hat(hat: Hat, ip: str, hostname: str | None = None) -> HatDecision:
    """Decide which mail-flow policy applies to a host connecting from *ip*.

    Groups are tried in order and the first member that matches wins, except
    that a group whose policy action is ``CONTINUE`` is skipped and matching
    goes on with the next group. An IPv4-mapped IPv6 address matches IPv4
    members. Hostname members (exact or ``.partial.domain``) match only when
    *hostname*, the verified reverse-DNS name, is given. When nothing matches
    (a table without an ``ALL`` catch-all), the decision is an implicit
    default: action ``REJECT`` with policy ``MailFlowPolicy("$BLOCKED",
    "REJECT", {})``, group ``ALL`` and rule ``ALL``. Raises ``ValueError`` if
    *ip* is not an IP address.
    """
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)
    addrs: tuple[_IP, ...] = (addr, mapped) if mapped is not None else (addr,)
    host = hostname.lower().rstrip(".") if hostname else None
    for group in hat.groups:
        policy = hat.policies[group.policy]
        if policy.action == "CONTINUE":
            continue
        for member, matches in zip(group.members, group._matchers, strict=True):
            if matches(addrs, host):
                return HatDecision(policy.action, policy, group.name, member)
    return HatDecision("REJECT", _IMPLICIT_BLOCKED, "ALL", "ALL")


@dataclass(frozen=True)
class RatEntry:
    """One recipient access rule; ``address`` as written, ``access`` ACCEPT or REJECT."""

    address: str
    access: str
    line: int = 0

    def __post_init__(self) -> None:
        line = self.line or None
        address = self.address.strip()
        local, at, domain = address.rpartition("@")
        if at:
            ok = (bool(local) and not re.search(r"[\s@<>]", local)
                  and (not domain or bool(_DOMAIN.fullmatch(domain))))
        else:
            ok = address.upper() == "ALL" or bool(_DOMAIN.fullmatch(address.removeprefix(".")))
        if not ok:
            raise _error(f"malformed recipient address {self.address!r} (expected ALL, "
                         "domain, .domain, user@domain or user@)", "rat.rat_address", line)
        access = self.access.strip().upper()
        if access not in ("ACCEPT", "REJECT"):
            raise _error(f"access must be ACCEPT or REJECT, not {self.access!r}",
                         "rat.access", line)
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "access", access)

    def matches(self, recipient: str) -> bool:
        """True if this rule covers *recipient* (case-insensitive)."""
        return self.covers(*recipient_parts(recipient))

    def covers(self, local: str, domain: str) -> bool:
        """`matches`, for a recipient already cut by `recipient_parts`."""
        rule = self.address.lower()
        if rule == "all":
            return True
        if rule.endswith("@"):
            return local == rule[:-1]
        if "@" in rule:
            return f"{local}@{domain}" == rule
        if rule.startswith("."):
            return domain.endswith(rule)
        return domain == rule


@dataclass(frozen=True)
class Rat:
    """A recipient access table; entries are tried in order, first match wins."""

    entries: tuple[RatEntry, ...]


def make_rat(entries: Iterable[tuple[str, str, int]]) -> Rat:
    """Validate ``(address, access, line)`` triples into a :class:`Rat`."""
    built: list[RatEntry] = []
    for address, access, line in entries:
        entry = RatEntry(address, access, line)
        if any(e.address.lower() == entry.address.lower() for e in built):
            raise _error(f"duplicate recipient address {entry.address!r}", "rat.rat_address",
                         line or None)
        built.append(entry)
    return Rat(tuple(built))


def recipient_parts(recipient: str) -> tuple[str, str]:
    """*recipient*'s local part and domain, lower case, as the rules compare them (no
    trailing dot on the domain; an address without `@` is all local part)."""
    local, at, domain = recipient.strip().strip("<>").lower().rpartition("@")
    if not at:
        local, domain = domain, ""
    return local, domain.rstrip(".")


def match_rat(rat: Rat, recipient: str) -> RatEntry | None:
    """Return the first entry covering *recipient*, or None (the caller rejects).
    The recipient is cut once for every entry."""
    local, domain = recipient_parts(recipient)
    return next((e for e in rat.entries if e.covers(local, domain)), None)


def names_hosts(hat: Hat) -> bool:
    """Whether *hat* has hostname or partial-domain members (matching them needs rDNS).

    Asked at every connection, answered once per table (a table is its text).
    """
    found = _NAMES_HOSTS.get(hat.text)
    if found is None:
        found = _NAMES_HOSTS[hat.text] = any(
            m != "ALL" and _compile_ip(m) is None for g in hat.groups for m in g.members)
    return found


_NAMES_HOSTS: dict[str, bool] = {}
