"""Quarantine settings and the pure decisions made from them.

Built-in `Policy`, `Virus`, `Outbreak` and `Unclassified` always exist (they
cannot be deleted; mail for an unknown or deleted quarantine lands in
`Unclassified`), custom policy quarantines come from the configuration.
Each has a retention, a default action at expiry (release or delete), the
"free up space by applying the default action on overflow" flag and, for
release-by-default quarantines, the early-release options.

Everything here is a plain function of its arguments: no I/O, no clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from pvoq.errors import Invalid
from pvoq.quarantine.states import BUILTINS, Action, BuiltinQuarantine

if TYPE_CHECKING:
    from pvoq.config.model import Config

RELEASE = Action.RELEASE
DELETE = Action.DELETE
UNCLASSIFIED = BuiltinQuarantine.UNCLASSIFIED
DAY = 86400.0
UNITS = {"minutes": 60.0, "hours": 3600.0, "days": DAY}
DELAYS = {"8h": 8 * 3600.0, "24h": DAY, "48h": 2 * DAY, "1w": 7 * DAY}


class SettingsError(Invalid, ValueError):
    """A quarantine configuration that AsyncOS would refuse."""


@dataclass(frozen=True)
class EarlyRelease:
    """What a release before the scheduled exit does to the message."""

    subject_tag: str = ""            # e.g. "[RELEASED EARLY]"
    subject_position: str = "prepend"  # prepend | append
    x_header: str = ""              # e.g. "X-Inappropriate-Release-Early: True"
    strip_attachments: bool = False

    @property
    def active(self) -> bool:
        return bool(self.subject_tag or self.x_header or self.strip_attachments)


@dataclass(frozen=True)
class QuarantineSettings:
    """One quarantine's settings, as `quarantineconfig` shows them."""

    name: str
    retention_s: float = 10 * DAY
    default_action: str = DELETE
    overflow: bool = False
    early_release: EarlyRelease = field(default_factory=EarlyRelease)
    builtin: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(raw: str) -> QuarantineSettings:
        data = json.loads(raw)
        data["early_release"] = EarlyRelease(**data.get("early_release", {}))
        return QuarantineSettings(**data)


def builtin_defaults() -> dict[str, QuarantineSettings]:
    """AsyncOS's defaults: Policy/Virus/Outbreak/Unclassified, 10 days (Outbreak 1 day)."""
    return {
        name: QuarantineSettings(name, retention, action, True, builtin=True)
        for name, retention, action in [
            (BuiltinQuarantine.POLICY, 10 * DAY, DELETE),
            (BuiltinQuarantine.VIRUS, 30 * DAY, DELETE),
            (BuiltinQuarantine.OUTBREAK, 1 * DAY, RELEASE),
            (BuiltinQuarantine.UNCLASSIFIED, 30 * DAY, RELEASE)]
    }


def merge_settings(configured: Iterable[QuarantineSettings]) -> dict[str, QuarantineSettings]:
    """Built-ins (overridable) plus custom quarantines; checks AsyncOS's rules."""
    result = builtin_defaults()
    for q in configured:
        if q.default_action not in (RELEASE, DELETE):
            raise SettingsError(f'quarantine "{q.name}": default action must be '
                                f"release or delete, not {q.default_action!r}")
        if q.retention_s <= 0:
            raise SettingsError(f'quarantine "{q.name}": retention must be positive')
        if q.early_release.active and q.default_action != RELEASE:
            raise SettingsError(f'quarantine "{q.name}": early-release options need '
                                "default action release")
        if q.early_release.subject_position not in ("prepend", "append"):
            raise SettingsError(f'quarantine "{q.name}": subject position must be '
                                "prepend or append")
        result[q.name] = QuarantineSettings(q.name, q.retention_s, q.default_action, q.overflow,
                                            q.early_release, builtin=q.name in BUILTINS)
    if not any(q.overflow for q in result.values()):
        raise SettingsError("at least one quarantine must free up space on overflow")
    return result


def quarantine_settings(config: Config) -> dict[str, QuarantineSettings]:
    """The effective quarantines: built-ins, overridden or added to by `<quarantines>`."""
    return merge_settings(
        QuarantineSettings(
            d.name, d.retention_seconds, d.default_action, d.free_up_space,
            EarlyRelease(d.subject_tag, d.subject_position, d.x_header, d.strip_attachments))
        for d in config.quarantines)


def early_release_options(settings: dict[str, QuarantineSettings],
                          names: Iterable[str]) -> list[EarlyRelease]:
    """The early-release options of the release-by-default quarantines among *names*: what
    a message released before its scheduled exit gets (subject tag, X-header, ...)."""
    result = []
    for name in names:
        found = settings.get(name)
        if found and found.default_action == "release" and found.early_release.active:
            result.append(found.early_release)
    return result


def retention_seconds(amount: float, unit: str) -> float:
    """`retention_seconds(3, "days")` — minutes, hours or days."""
    if unit not in UNITS:
        raise SettingsError(f"retention unit must be one of {', '.join(UNITS)}, not {unit!r}")
    return amount * UNITS[unit]


def scheduled_exit(received_at: float, settings: QuarantineSettings) -> float:
    """When the default action applies to a message received at *received_at*."""
    return received_at + settings.retention_s


def delay_seconds(delay: str) -> float:
    """The Delay Scheduled Exit choices: 8h, 24h, 48h, 1w."""
    if delay not in DELAYS:
        raise SettingsError(f"delay must be one of {', '.join(DELAYS)}, not {delay!r}")
    return DELAYS[delay]


def quarantine_for(name: str, known: Iterable[str]) -> str:
    """Mail for an unknown (or deleted) quarantine lands in Unclassified."""
    return name if name in set(known) else UNCLASSIFIED


@dataclass(frozen=True)
class OverflowCandidate:
    """A held message the overflow rule may act on: all its quarantines allow it."""

    mid: int
    received_at: float
    size: int


def choose_overflow(candidates: Sequence[OverflowCandidate], need_bytes: int) -> list[int] | None:
    """Oldest first, the messages whose removal frees *need_bytes*; None if impossible."""
    if need_bytes <= 0:
        return []
    chosen: list[int] = []
    freed = 0
    for c in sorted(candidates, key=lambda c: (c.received_at, c.mid)):
        chosen.append(c.mid)
        freed += c.size
        if freed >= need_bytes:
            return chosen
    return None


def percent_full(used_bytes: int, quota_bytes: int) -> int:
    """Whole percent of the quota in use (0 when there is no quota)."""
    if quota_bytes <= 0:
        return 0
    return min(100, used_bytes * 100 // quota_bytes)


def crossed_threshold(before: int, after: int, thresholds: Sequence[int] = (50, 75, 90, 95, 100)
                      ) -> int | None:
    """The highest threshold crossed going from *before* to *after* percent, if any."""
    crossed = [t for t in thresholds if before < t <= after]
    return crossed[-1] if crossed else None
