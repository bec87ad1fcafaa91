"""What a check decides, as values: verdicts, check results, the scan result.

Owns the vocabulary every stage speaks: a check returns a `CheckResult`
(pass, quarantine, drop, bounce, or a modified message) together with the
rules it hit and missed; the pipeline folds them into one `ScanResult`.
A check that cannot decide raises `ScanError` (a temporary failure: the
message stays in the spool and is retried), never returns a pass.

Actions are a `CheckAction` (a `StrEnum`: each member equals its string,
which is what logs, traces and CPQ metadata carry); the module-level names
`PASS`, `QUARANTINE`, `DROP`, `BOUNCE`, `MODIFY` are its members.

This module never scans anything and never does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from pvoq.errors import TemporaryFailure

if TYPE_CHECKING:
    from pvoq.cpq.transfer import QuarantineRef


class CheckAction(StrEnum):
    """What a check, or the whole scan, does with a message."""

    PASS = "pass"              # on to the next stage (at the end: delivered)
    QUARANTINE = "quarantine"  # to the quarantines its verdicts name
    DROP = "drop"              # discarded, ends the pipeline
    BOUNCE = "bounce"          # refused with a bounce, ends the pipeline
    MODIFY = "modify"          # passed, rewritten (a check's outcome only)


PASS: Final = CheckAction.PASS
QUARANTINE: Final = CheckAction.QUARANTINE
DROP: Final = CheckAction.DROP
BOUNCE: Final = CheckAction.BOUNCE
MODIFY: Final = CheckAction.MODIFY
SKIPPED: Final = "skipped"  # a stage's outcome in a trace when skip-filters() skipped it


class ScanError(TemporaryFailure):
    """A stage could not decide (error, engine down, timeout): a temporary failure.

    The message stays queued and is scanned again later; it never passes.
    """

    def __init__(self, message: str, *, stage: str = "") -> None:
        super().__init__(message)
        self.stage = stage


@dataclass(frozen=True)
class Verdict:
    """A decision to quarantine, with the reason shown to administrators.

    `reason` is AsyncOS-shaped: `message filter:NAME`, `content filter:NAME`,
    `a/v verdict:VIRAL Eicar-Test-Signature`, `VOF rule:OF-2026-1`.
    `duplicate` marks a copy (duplicate-quarantine): the message itself goes on.
    """

    stage: str
    quarantine: str
    reason: str
    detail: str = ""
    duplicate: bool = False
    retention_s: float | None = None
    threat_level: int | None = None

    def ref(self) -> QuarantineRef:
        """The entry of a quarantine transfer's `quarantines[]` for this verdict."""
        from pvoq.cpq.transfer import QuarantineRef  # here: the scanner process has no CPQ

        return QuarantineRef(name=self.quarantine, reason=self.reason, stage=self.stage,
                             detail=self.detail, retention_s=self.retention_s,
                             threat_level=self.threat_level)

    def metadata(self) -> dict[str, Any]:
        """`ref()` as the JSON object it travels as."""
        return self.ref().to_json()


@dataclass
class CheckResult:
    """One check's outcome: an action, its quarantine verdicts, and the why."""

    action: CheckAction = PASS              # PASS, DROP or BOUNCE (final actions)
    verdicts: list[Verdict] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    body: bytes | None = None               # the modified message, if the check changed it
    reason: str = ""                        # why a DROP or BOUNCE
    skip: tuple[str, ...] = ()              # later stages to skip (skip-filters)

    @property
    def outcome(self) -> CheckAction:
        if self.action != PASS:
            return self.action
        if any(not v.duplicate for v in self.verdicts):
            return QUARANTINE
        return MODIFY if self.body is not None else PASS


@dataclass(frozen=True)
class StageTrace:
    """What one stage did to one message (for logs and `pipeline` diagnostics)."""

    stage: str
    outcome: str                            # a CheckAction, or SKIPPED
    hits: tuple[str, ...] = ()
    misses: tuple[str, ...] = ()


@dataclass
class ScanResult:
    """The pipeline's decision for one message."""

    action: CheckAction = PASS              # PASS (deliver), QUARANTINE, DROP, BOUNCE
    verdicts: list[Verdict] = field(default_factory=list)     # quarantines of the message
    duplicates: list[Verdict] = field(default_factory=list)   # copies to quarantine
    body: bytes | None = None               # set when a stage modified the message
    reason: str = ""
    trace: list[StageTrace] = field(default_factory=list)
    skip: tuple[str, ...] = ()              # stages skipped at a check's request
    unscannable: str = ""                   # why the message could not be scanned, if so
