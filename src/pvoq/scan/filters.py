"""Evaluating message and content filters (the language of `config.filterlang`).

Owns what a filter *does*: its condition against a `ScanMessage`, then its
actions in order. Final actions (`quarantine`, `drop`, `bounce`, `deliver`,
`skip-filters`) end the filter set; the others (`duplicate-quarantine`,
`insert-header`, `strip-header`, `strip-attachment-by-name`) let the next
filter run, on the modified message. Every filter is recorded as a hit or a
miss, so a quarantine can show why. Drop and bounce end the whole pipeline;
`skip-filters()` also skips the later filter stages named by the caller.
A `FilterSet` is one filter stage of the pipeline (a `scan.check.Check`).

Pure: bytes in, `CheckResult` out; no I/O, no logging.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from email import message_from_bytes
from email.policy import compat32
from typing import Any

from pvoq.config.filterlang import (
    Action,
    All,
    Any_,
    BuiltinQuarantine,
    Compare,
    Condition,
    Const,
    Contains,
    Filter,
    HeaderExists,
    IpMatch,
    Match,
    Not,
)
from pvoq.config.model import ContentFilter
from pvoq.scan.check import Pvo, row
from pvoq.scan.message import ScanMessage, part_filename
from pvoq.scan.verdict import BOUNCE, DROP, CheckResult, Verdict

_OPS = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}


def legacy_filter(f: ContentFilter) -> Filter:
    """A `<content_filter>` (header, regex, quarantine) as a filter of the language."""
    field_name = "subject" if f.header.lower() == "subject" else "header"
    condition = Match(field_name, f.pattern, header="" if field_name == "subject" else f.header)
    source = (f'{f.name}: if header("{f.header}") == "{f.pattern.pattern}" '
              f'{{ quarantine("{f.quarantine}"); }}')
    return Filter(f.name, condition, (Action("quarantine", (f.quarantine,), 0, 0),),
                  source=source)


def evaluate(condition: Condition, msg: ScanMessage) -> bool:
    """Whether *condition* holds for *msg*."""
    match condition:
        case Const(value):
            return value
        case Not(item):
            return not evaluate(item, msg)
        case All(items):
            return all(evaluate(i, msg) for i in items)
        case Any_(items):
            return any(evaluate(i, msg) for i in items)
        case Match():
            found = any(condition.pattern.search(v) for v in _values(condition, msg))
            return found != condition.negate
        case HeaderExists(header):
            return bool(msg.head.get_all(header))
        case IpMatch(networks, negate):
            try:
                ip = ipaddress.ip_address(msg.envelope.remote_ip)
            except ValueError:
                return negate
            return any(ip in n for n in networks) != negate
        case Contains(where, pattern):
            if where == "body-contains":
                return any(pattern.search(t) for t in msg.body_texts)
            return any(pattern.search(a.payload.decode("utf-8", "replace"))
                       for a in msg.attachments)
        case Compare(field, op, value):
            sizes = [msg.size] if field == "body-size" else [a.size for a in msg.attachments]
            return any(_OPS[op](s, value) for s in sizes)
    raise TypeError(f"not a condition: {condition!r}")  # pragma: no cover


def _values(m: Match, msg: ScanMessage) -> Sequence[str]:
    env = msg.envelope
    if m.field == "subject":
        return [msg.subject]
    if m.field == "header":
        return msg.headers(m.header)
    if m.field == "mail-from":
        return [env.mail_from]
    if m.field == "rcpt-to":
        return list(env.rcpt_to)
    if m.field == "attachment-filename":
        return [a.filename for a in msg.attachments]
    if m.field == "attachment-type":
        return [a.content_type for a in msg.attachments]
    if m.field == "sendergroup":
        return [env.sender_group]
    raise ValueError(f"unknown field {m.field}")  # pragma: no cover


# -- modifications (on the raw bytes, so untouched parts stay byte-identical) -----
def _split(body: bytes) -> tuple[bytes, bytes, bytes]:
    """(header lines each with its line end, the blank line, the rest)."""
    for eol in (b"\r\n", b"\n"):
        at = body.find(eol + eol)
        if at >= 0:
            return body[:at + len(eol)], eol, body[at + 2 * len(eol):]
    return body, b"", b""


def insert_header(body: bytes, name: str, value: str) -> bytes:
    eol = b"\r\n" if b"\r\n" in body[:2000] else b"\n"
    clean = re.sub(r"[\r\n]+", " ", value)
    return f"{name}: {clean}".encode() + eol + body


def strip_header(body: bytes, name: str) -> bytes:
    head, sep, rest = _split(body)
    lines = re.split(rb"(?<=\n)", head)
    kept: list[bytes] = []
    dropping = False
    wanted = name.lower().encode() + b":"
    for line in lines:
        if line[:1] in (b" ", b"\t") and dropping:
            continue
        dropping = line.lower().startswith(wanted)
        if not dropping:
            kept.append(line)
    return b"".join(kept) + sep + rest


def strip_attachments(body: bytes, pattern: re.Pattern[str]) -> tuple[bytes, list[str]]:
    message = message_from_bytes(body, policy=compat32)
    removed: list[str] = []
    for part in message.walk():
        name = part_filename(part)
        if part.is_multipart() or not name or not pattern.search(name):
            continue
        removed.append(name)
        for header in ("Content-Type", "Content-Transfer-Encoding", "Content-Disposition"):
            del part[header]
        part["Content-Type"] = 'text/plain; charset="us-ascii"'
        part["Content-Disposition"] = 'inline; filename="removed.txt"'
        shown = name.encode("ascii", "backslashreplace").decode("ascii")  # a us-ascii part
        part.set_payload(f"The attachment {shown} was removed by a filter.\n")
    if not removed:
        return body, []
    return message.as_bytes(policy=compat32.clone(linesep="\r\n")), removed


class FilterSet:
    """An ordered list of filters run as one stage, the check named *stage*.

    *kind* is the prefix of the reasons (`message filter`, `content filter`);
    the title is its plural unless given. `skip-filters()` skips the stages
    in *skip_on_skip_filters*.
    """

    pvo: str = Pvo.POLICY

    def __init__(self, stage: str, kind: str, filters: Sequence[Filter], *,
                 skip_on_skip_filters: tuple[str, ...] = (), title: str = "",
                 quarantine: str = BuiltinQuarantine.POLICY, timeout_s: float = 10.0) -> None:
        self.name = stage
        self.kind = kind  # "message filter" | "content filter" (the reason's prefix)
        self.filters = tuple(filters)
        self.skip_on_skip_filters = skip_on_skip_filters
        self.title = title or f"{kind.capitalize()}s"
        self.quarantine = quarantine  # where its catches usually go
        self.timeout_s = timeout_s

    def describe(self) -> dict[str, Any]:
        if not self.filters:
            return row(self, "no filters")
        count = len(self.filters)
        return row(self, f"{count} filter{'s' if count != 1 else ''}: "
                   + ", ".join(f.name for f in self.filters))

    def check(self, msg: ScanMessage) -> CheckResult:
        result = CheckResult()
        for f in self.filters:
            hit = evaluate(f.condition, msg)
            (result.hits if hit else result.misses).append(f"{self.kind}:{f.name}")
            actions = f.actions if hit else f.else_actions
            stop = False
            for action in actions:
                msg, stop = self._apply(action, f, msg, result)
                if stop:
                    break
            if stop or result.action in (DROP, BOUNCE):
                break
        return result

    def _apply(self, action: Action, f: Filter, msg: ScanMessage,
               result: CheckResult) -> tuple[ScanMessage, bool]:
        reason = f"{self.kind}:{f.name}"
        name, args = action.name, action.args
        if name in ("quarantine", "duplicate-quarantine"):
            duplicate = name == "duplicate-quarantine"
            result.verdicts.append(Verdict(self.name, args[0], reason, f.source,
                                           duplicate=duplicate))
            return msg, not duplicate
        if name in ("drop", "bounce"):
            result.action = DROP if name == "drop" else BOUNCE
            result.reason = reason
            return msg, True
        if name == "deliver":
            return msg, True
        if name == "skip-filters":
            result.skip = self.skip_on_skip_filters
            return msg, True
        if name == "insert-header":
            body = insert_header(msg.body, args[0], args[1])
        elif name == "strip-header":
            body = strip_header(msg.body, args[0])
        else:  # strip-attachment-by-name
            assert action.pattern is not None
            body, _ = strip_attachments(msg.body, action.pattern)
        if body != msg.body:
            result.body = body
            msg = ScanMessage(body, msg.envelope)
        return msg, False
