"""Who may do what in the quarantines: callers, roles and permissions.

AsyncOS roles: Administrator manages everything and alone may Send Copy;
Operator and Help Desk search, view and act; Read-Only Operator searches and
views; a custom role acts only in the quarantines granted to it. Plain
values and functions; the REST API and the CLI both ask `permits`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pvoq.errors import Forbidden

ADMIN = "admin"
OPERATOR = "operator"
HELPDESK = "helpdesk"
READONLY = "read-only"
CUSTOM = "custom"
ROLES = (ADMIN, OPERATOR, HELPDESK, READONLY, CUSTOM)

VIEW = ("search", "view", "saved_search")
ACT = ("release", "delete", "delay", "move", "rescan")  # rescan: a dry run, before releasing
_PERMISSIONS: dict[str, frozenset[str]] = {
    ADMIN: frozenset((*VIEW, *ACT, "copy", "audit", "configure")),
    OPERATOR: frozenset((*VIEW, *ACT)),
    HELPDESK: frozenset((*VIEW, *ACT)),
    READONLY: frozenset(VIEW),
    CUSTOM: frozenset((*VIEW, *ACT)),
}


class PermissionDenied(Forbidden):
    """The caller's role does not allow this action (or this quarantine)."""


@dataclass(frozen=True)
class Caller:
    """Who acts, from where, with which role (custom roles: which quarantines)."""

    actor: str
    origin: str
    role: str = ADMIN
    quarantines: tuple[str, ...] | None = None  # None: every quarantine

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; one of {', '.join(ROLES)}")


SYSTEM = Caller("system", "scheduler", ADMIN)


def permits(caller: Caller, action: str) -> bool:
    """Whether *caller*'s role allows *action* at all."""
    return action in _PERMISSIONS[caller.role]


def check(caller: Caller, action: str) -> None:
    if not permits(caller, action):
        raise PermissionDenied(f"role {caller.role} may not {action}")


def visible(caller: Caller, wanted: tuple[str, ...]) -> tuple[str, ...]:
    """The quarantines a search by *caller* covers (empty: every quarantine)."""
    if caller.quarantines is None:
        return wanted
    if not wanted:
        return caller.quarantines
    denied = [q for q in wanted if q not in caller.quarantines]
    if denied:
        raise PermissionDenied(f"no access to quarantine {', '.join(denied)}")
    return wanted
