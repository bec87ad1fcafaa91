"""What one doctor check found: `CheckResult(name, status, observed, fix)`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class CheckResult:
    """One line of the report: the check's *name*, its *status*, what it *observed*
    and the *fix* (the exact command or configuration change; empty when OK)."""

    name: str
    status: Status
    observed: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        return data


def ok(name: str, observed: str) -> CheckResult:
    return CheckResult(name, Status.OK, observed)


def warn(name: str, observed: str, fix: str) -> CheckResult:
    return CheckResult(name, Status.WARN, observed, fix)


def fail(name: str, observed: str, fix: str) -> CheckResult:
    return CheckResult(name, Status.FAIL, observed, fix)
