"""Outbreak filters: the pipeline's outbreak check, over a JSON rules file reloaded when it changes.

Owns the rules file format, its validation, matching a message against the
rules, and the threat-dependent retention. The file:

    {"version": "2026-11-29.1",
     "rules": [{"id": "OF-1", "description": "Parcel phishing wave",
                "threat_level": 4, "category": "other",
                "urls": ["parcel-track.example/track"],
                "attachment_extensions": ["exe", "scr"],
                "attachment_types": ["application/x-msdownload"],
                "attachment_sha256": ["<64 hex digits>"]}]}

A rule matches when any of its matchers does: a URL whose host is the
rule's host or a subdomain of it, under the path prefix if one is given; an
attachment's extension, MIME type or SHA-256. `category` (an
`OutbreakCategory`) is `viral` (viral attachments: a threat carried by
attachments; the default when the rule matches attachments) or `other`
(other threats); it selects the retention, as AsyncOS keeps viral-attachment
outbreaks and other threats for different times. It is not an anti-virus
verdict (`scan.antivirus.AvVerdict`): no engine has found a virus.

`OutbreakCheck` is the pipeline's `outbreak_filters` stage (a
`scan.check.Check`): the highest rule a message matches decides, and a
message at or above the quarantine threat level goes to `Outbreak`.

A bad file is refused with `RulesError` and the rules in force stay.
This module never talks to the network and never logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from pvoq.config.filterlang import BuiltinQuarantine
from pvoq.errors import Invalid
from pvoq.scan.check import Pvo, Stage, row
from pvoq.scan.message import ScanMessage
from pvoq.scan.verdict import CheckResult, ScanError, Verdict


class OutbreakCategory(StrEnum):
    """The kind of threat an outbreak rule is about (it selects the retention)."""

    VIRAL_ATTACHMENTS = "viral"  # carried by attachments
    OTHER_THREATS = "other"      # phishing links, scams...


VIRAL: Final = OutbreakCategory.VIRAL_ATTACHMENTS
OTHER: Final = OutbreakCategory.OTHER_THREATS
_SHA256 = re.compile(r"[0-9a-f]{64}")


class RulesError(Invalid, ValueError):
    """The rules file cannot be read or is not valid."""


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    threat_level: int
    category: OutbreakCategory
    urls: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    sha256: tuple[str, ...] = ()

    def match(self, msg: ScanMessage) -> str | None:
        """What in *msg* matches this rule (for the log), or None."""
        for host, path in msg.urls if self.urls else ():
            for spec in self.urls:
                rule_host, _, rule_path = spec.partition("/")
                if ((host == rule_host or host.endswith("." + rule_host))
                        and path.startswith("/" + rule_path)):
                    return f"URL {host}{path}"
        for a in msg.attachments if (self.extensions or self.types or self.sha256) else ():
            if a.extension and a.extension in self.extensions:
                return f"attachment {a.filename} (extension .{a.extension})"
            if a.content_type in self.types:
                return f"attachment {a.filename} (type {a.content_type})"
            if self.sha256 and a.sha256 in self.sha256:
                return f"attachment {a.filename} (SHA-256 {a.sha256[:16]}...)"
        return None


@dataclass(frozen=True)
class RuleSet:
    version: str
    rules: tuple[Rule, ...]

    def matches(self, msg: ScanMessage) -> list[tuple[Rule, str]]:
        found = []
        for rule in self.rules:
            what = rule.match(msg)
            if what is not None:
                found.append((rule, what))
        return found


def _strings(raw: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RulesError(f"{where}: {key} must be a list of non-empty strings")
    return tuple(v.strip().lower() for v in value)


def parse_rules(data: bytes | str, *, source: str = "rules") -> RuleSet:
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise RulesError(f"{source}: not JSON ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
        raise RulesError(f"{source}: expected an object with a 'rules' list")
    rules: list[Rule] = []
    for index, r in enumerate(raw["rules"]):
        where = f"{source}: rules[{index}]"
        if not isinstance(r, dict):
            raise RulesError(f"{where}: must be an object")
        rule_id = r.get("id")
        if not isinstance(rule_id, str) or not rule_id:
            raise RulesError(f"{where}: missing id")
        where = f"{source}: rule {rule_id}"
        if any(x.id == rule_id for x in rules):
            raise RulesError(f"{where}: duplicate id")
        level = r.get("threat_level")
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 5:
            raise RulesError(f"{where}: threat_level must be an integer from 1 to 5")
        urls = _strings(r, "urls", where)
        exts = tuple(e.lstrip(".") for e in _strings(r, "attachment_extensions", where))
        types = _strings(r, "attachment_types", where)
        hashes = _strings(r, "attachment_sha256", where)
        if bad := [h for h in hashes if not _SHA256.fullmatch(h)]:
            raise RulesError(f"{where}: not a SHA-256: {bad[0]!r}")
        if not (urls or exts or types or hashes):
            raise RulesError(f"{where}: no matcher (urls, attachment_extensions, "
                             "attachment_types, attachment_sha256)")
        category = r.get("category", VIRAL if (exts or types or hashes) else OTHER)
        if category not in tuple(OutbreakCategory):
            raise RulesError(f"{where}: category must be 'viral' or 'other'")
        rules.append(Rule(rule_id, str(r.get("description", "")), level,
                          OutbreakCategory(category), urls, exts, types, hashes))
    return RuleSet(str(raw.get("version", "")), tuple(rules))


def legacy_rules(urls: tuple[str, ...]) -> tuple[Rule, ...]:
    """`<url>` entries of the configuration as rules of the highest threat level."""
    return tuple(Rule(f"url:{u}", f"URL {u}", 5, OTHER, urls=(u,)) for u in urls)


class RulesFile:
    """The rules file, re-read whenever its modification time or size changes."""

    def __init__(self, path: Path | None, extra: tuple[Rule, ...] = ()) -> None:
        self.path = path
        self.extra = extra
        self._stamp: tuple[int, int] | None = None
        self.current = RuleSet("", extra)
        self.error = ""
        self.loaded = path is None
        if path is not None:
            with contextlib.suppress(RulesError):  # kept in self.error; scans fail closed
                self.reload()

    def _stat(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def changed(self) -> bool:
        return self.path is not None and self._stat() != self._stamp

    def reload(self) -> bool:
        """Re-read the file; True if the rules changed. A bad file raises RulesError."""
        if self.path is None:
            return False
        stamp = self._stat()
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            self._stamp, self.error = stamp, f"{self.path}: {exc.strerror}"
            raise RulesError(self.error) from None
        try:
            parsed = parse_rules(data, source=str(self.path))
        except RulesError as exc:
            self._stamp, self.error = stamp, str(exc)
            raise
        self._stamp, self.error, self.loaded = stamp, "", True
        new = RuleSet(parsed.version, (*self.extra, *parsed.rules))
        changed = new != self.current
        self.current = new
        return changed


class OutbreakCheck:
    """The `outbreak_filters` stage: the rules in force against a message (quarantine
    `Outbreak`, kept for the retention of the deciding rule's category).

    A configured rules file that never loaded fails the check (fail closed).
    Disabled, the check passes everything and says so in its misses.
    """

    name: str = Stage.OUTBREAK_FILTERS
    title = "Outbreak filters"
    pvo: str = Pvo.OUTBREAK
    quarantine = BuiltinQuarantine.OUTBREAK

    def __init__(self, rules: RulesFile, *, threshold: int, retention_viral_s: float,
                 retention_other_s: float, timeout_s: float, enabled: bool = True) -> None:
        self.rules = rules
        self.threshold = threshold  # the quarantine threat level
        self.retention_viral_s = retention_viral_s
        self.retention_other_s = retention_other_s
        self.timeout_s = timeout_s
        self.enabled = enabled

    def describe(self) -> dict[str, Any]:
        if not self.enabled:
            return row(self, "disabled")
        current = self.rules.current
        where = str(self.rules.path) if self.rules.path else "configuration <url> rules"
        text = (f"{where}: {len(current.rules)} rules, version {current.version or '-'}; "
                f"quarantine at threat level >= {self.threshold}")
        return row(self, text + (f"; ERROR {self.rules.error}" if self.rules.error else ""))

    def check(self, msg: ScanMessage) -> CheckResult:
        if not self.enabled:
            return CheckResult(misses=["outbreak filters disabled"])
        if self.rules.path is not None and not self.rules.loaded:
            raise ScanError(f"no valid outbreak rules: {self.rules.error}")
        ruleset = self.rules.current
        matches = ruleset.matches(msg)
        if not matches:
            return CheckResult(misses=[f"VOF rules version {ruleset.version or '-'}: no match"])
        rule, what = max(matches, key=lambda m: m[0].threat_level)
        hits = [f"VOF rule:{r.id} level {r.threat_level}" for r, _ in matches]
        if rule.threat_level < self.threshold:
            return CheckResult(hits=hits)
        retention = (self.retention_viral_s if rule.category == VIRAL
                     else self.retention_other_s)
        detail = f"{what}; threat level {rule.threat_level}; {rule.description}".strip("; ")
        return CheckResult(hits=hits, verdicts=[Verdict(
            self.name, self.quarantine, f"VOF rule:{rule.id}", detail,
            retention_s=retention, threat_level=rule.threat_level)])
