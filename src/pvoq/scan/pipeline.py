"""The gateway's scanning pipeline, as data.

Stages run in a fixed, printable order (`STAGES`). Each returns verdicts as
values; a message caught by several stages goes to every quarantine they
name. A released message re-enters the pipeline *after* the last stage that
quarantined it, so it is never quarantined twice for the same reason (a
Policy release is still virus-scanned; a Virus release is not scanned again).

A check that fails raises `ScanError`: the caller keeps the message and
retries (fail closed, never a silent pass).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32

from pvoq.config.model import ScanSettings

CONTENT_FILTERS = "content_filters"
ANTIVIRUS = "antivirus"
OUTBREAK_FILTERS = "outbreak_filters"
STAGES = (CONTENT_FILTERS, ANTIVIRUS, OUTBREAK_FILTERS)

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
_URL = re.compile(rb"https?://(?:[^\s/?#@\"'<>]*@)?([A-Za-z0-9.\-]+)(?::\d+)?(/[^\s\"'<>]*)?",
                  re.IGNORECASE)


class ScanError(Exception):
    """A stage could not decide; the message must stay queued."""


@dataclass(frozen=True)
class Verdict:
    """A stage's decision to quarantine, with the reason shown to administrators."""

    stage: str
    quarantine: str
    reason: str  # "content filter:NAME", "a/v verdict:VIRAL", "VOF rule:..."
    detail: str = ""


def _decoded(value: object) -> str:
    """A header as a person reads it: RFC 2047 encoded-words decoded."""
    raw = str(value)
    try:
        return str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeError):
        return raw


def _parts(message: Message) -> Iterator[bytes]:
    """Every leaf part's decoded payload (base64, quoted-printable undone)."""
    for part in message.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            yield payload


class Pipeline:
    def __init__(self, settings: ScanSettings) -> None:
        self.settings = settings
        self._checks: dict[str, Callable[[bytes, Message], list[Verdict]]] = {
            CONTENT_FILTERS: self._content_filters,
            ANTIVIRUS: self._antivirus,
            OUTBREAK_FILTERS: self._outbreak,
        }

    @staticmethod
    def resume_point(stages: list[str]) -> str | None:
        """The last of *stages* in pipeline order (where a release continues after)."""
        known = [s for s in STAGES if s in stages]
        return known[-1] if known else None

    def run(self, body: bytes, *, resume_after: str | None = None) -> list[Verdict]:
        start = STAGES.index(resume_after) + 1 if resume_after in STAGES else 0
        try:
            message = message_from_bytes(body, policy=compat32)
        except Exception as exc:  # pragma: no cover - compat32 parsing is lenient
            raise ScanError(f"unparseable message: {exc}") from exc
        verdicts: list[Verdict] = []
        for stage in STAGES[start:]:
            try:
                verdicts.extend(self._checks[stage](body, message))
            except ScanError:
                raise
            except Exception as exc:
                raise ScanError(f"{stage} failed: {type(exc).__name__}: {exc}") from exc
        return verdicts

    def _content_filters(self, body: bytes, message: Message) -> list[Verdict]:
        for f in self.settings.content_filters:
            for value in message.get_all(f.header, []) or []:
                if f.pattern.search(_decoded(value)):
                    return [Verdict(CONTENT_FILTERS, f.quarantine, f"content filter:{f.name}",
                                    f"{f.header} matched {f.pattern.pattern!r}")]
        return []

    def _antivirus(self, body: bytes, message: Message) -> list[Verdict]:
        if not self.settings.antivirus_enabled:
            return []
        if EICAR in body or any(EICAR in p for p in _parts(message)):
            return [Verdict(ANTIVIRUS, "Virus", "a/v verdict:VIRAL", "Eicar-Test-Signature")]
        return []

    def _outbreak(self, body: bytes, message: Message) -> list[Verdict]:
        if not self.settings.outbreak_enabled or not self.settings.outbreak_urls:
            return []
        for payload in [body, *_parts(message)]:
            for m in _URL.finditer(payload):
                host = m.group(1).decode("ascii", "replace").lower().rstrip(".")
                path = (m.group(2) or b"/").decode("ascii", "replace")
                for rule in self.settings.outbreak_urls:
                    rule_host, _, rule_path = rule.partition("/")
                    host_hit = host == rule_host or host.endswith("." + rule_host)
                    if host_hit and path.startswith("/" + rule_path):
                        return [Verdict(OUTBREAK_FILTERS, "Outbreak", f"VOF rule:url:{rule}",
                                        f"URL {host}{path}")]
        return []
