"""What a stage of the pipeline is: the `Check` protocol, and the names of the stages.

Owns the contract between the pipeline and its stages. A check is an object
that knows its stage name, its title, which of Policy, Virus or Outbreak it
decides (`Pvo`), where its catches usually go, how long it may take, and
what `pipeline show` prints for it; `check(msg)` gives its decision as a
value, a `CheckResult` (verdicts are values, as in maddy's
`framework/module/check.go`). A check that cannot decide raises; the
pipeline turns that, and a check out of time, into a `ScanError`.

The filter sets (`scan.filters.FilterSet`), anti-virus
(`scan.antivirus.AntivirusCheck`) and outbreak filters
(`scan.outbreak.OutbreakCheck`) implement it; `scan.pipeline.Pipeline`
runs a list of them. A new check is a class with these members, put in
that list.

This module never scans anything and never does I/O.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pvoq.scan.message import ScanMessage
from pvoq.scan.verdict import CheckResult

__all__ = ["Check", "Pvo", "Stage", "row"]


class Stage(StrEnum):
    """The stages of the standard pipeline, in the order they run (and delivery, last).

    The values are what logs, traces, CPQ metadata and resume points carry.
    """

    MESSAGE_FILTERS = "message_filters"
    ANTIVIRUS = "antivirus"
    CONTENT_FILTERS = "content_filters"
    OUTBREAK_FILTERS = "outbreak_filters"
    DELIVERY = "delivery"


class Pvo(StrEnum):
    """Which of Policy, Virus and Outbreak a stage decides (the column `pipeline show` prints)."""

    POLICY = "P"
    VIRUS = "V"
    OUTBREAK = "O"
    NONE = "-"


@runtime_checkable
class Check(Protocol):
    """One stage of the pipeline: who it is, and its decision on a message.

    `name` is the stage (`Stage`, or any other name a custom pipeline gives);
    `quarantine` the quarantine its catches usually go to (the verdicts name
    their own); `timeout_s` what the pipeline allows `check` before the scan
    fails as a temporary failure.
    """

    @property
    def name(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def pvo(self) -> str: ...

    @property
    def quarantine(self) -> str: ...

    @property
    def timeout_s(self) -> float: ...

    def describe(self) -> dict[str, Any]:
        """The check's row of `pipeline show`: `stage`, `title`, `pvo`, `quarantine`,
        `engine` (what decides, in words) and `timeout_s` (use `row`)."""
        ...

    def check(self, msg: ScanMessage) -> CheckResult:
        """The decision on *msg*; raise if there is none (the scan then fails, and is retried)."""
        ...


def row(check: Check, engine: str) -> dict[str, Any]:
    """The `describe()` of *check*, with *engine* saying what decides in it."""
    return {"stage": check.name, "title": check.title, "pvo": check.pvo,
            "quarantine": check.quarantine, "engine": engine, "timeout_s": check.timeout_s}
