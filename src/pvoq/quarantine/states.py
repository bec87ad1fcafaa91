"""The quarantine's vocabulary: message states, operator actions, built-in quarantines.

Each is a `StrEnum`: a member is its string, so what the store writes to SQL,
the audit trail and JSON is the same text as before, and a value read back
from SQL (a plain string) compares equal to its member. The built-in
quarantines are configuration vocabulary (`config.filterlang`), re-exported
here as `BuiltinQuarantine` and `BUILTINS`.
"""

from __future__ import annotations

from enum import StrEnum

from pvoq.config.filterlang import BUILTIN_QUARANTINES, BuiltinQuarantine


class State(StrEnum):
    """Where a message stands (`messages.state`, `message_quarantines.state`)."""

    HELD = "held"          # in the quarantine, waiting for an action or its scheduled exit
    SETTLING = "settling"  # no longer held anywhere; one process is settling it (`claim`)
    RELEASED = "released"  # released: delivered on (from every quarantine it was in)
    DELETED = "deleted"    # deleted: its body is dropped


class Action(StrEnum):
    """What an operator, or the scheduled exit (`default_action`), does to a message."""

    RELEASE = "release"
    DELETE = "delete"


ACTION_STATE: dict[str, State] = {Action.RELEASE: State.RELEASED, Action.DELETE: State.DELETED}

BUILTINS = BUILTIN_QUARANTINES

__all__ = ["ACTION_STATE", "BUILTINS", "Action", "BuiltinQuarantine", "State"]
