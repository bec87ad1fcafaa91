"""Which role may run which operator command: one table for the CLI, the console and the API.

Every operator command needs one permission of `quarantine.roles` before it
runs, whoever asks (the admin socket's mapped user, or the console's user
through `ConsoleContext.call`): looking (`VIEW_COMMANDS`) needs `view`, which
every role has; the quarantine commands need `search` at the door and the
`QuarantineService` checks each action (release, copy...) and quarantine
itself; the audit trail needs `audit`; anything else changes the appliance
and needs `configure` (administrators only). A command this table does not
name is an administrator's. Tracking (`track`) shows every message's path,
clean mail included: a role limited to granted quarantines may not run it.
"""

from __future__ import annotations

from pvoq.quarantine.roles import Caller, PermissionDenied, permits

VIEW_COMMANDS = frozenset({
    "status", "tophosts", "hoststatus", "listeners", "showrecipients", "workqueue.status",
    "pipeline.show", "pvo.check", "pvo.status", "gateway.list", "ssh.show", "quarantine.config",
    "user.whoami", "track", "logsub.status",
})
AUDIT_COMMANDS = frozenset({"audit.verify", "audit.tail", "audit.search"})
# Commands that show mail beyond any quarantine: refused to a role limited to some quarantines.
ALL_MAIL_COMMANDS = frozenset({"track"})
ADMIN_QUARANTINE_COMMANDS = frozenset({"quarantine.expire", "quarantine.add", "quarantine.edit",
                                       "quarantine.remove", "quarantine.definitions",
                                       "quarantine.overview"})


def required_permission(command: str) -> str:
    """The permission *command* needs (see module doc)."""
    if command in VIEW_COMMANDS:
        return "view"
    if command in AUDIT_COMMANDS:
        return "audit"
    if command.startswith("quarantine.") and command not in ADMIN_QUARANTINE_COMMANDS:
        return "search"
    return "configure"


def check_command(command: str, caller: Caller) -> None:
    """Raise `PermissionDenied` unless *caller*'s role may run *command*."""
    needed = required_permission(command)
    if command in ALL_MAIL_COMMANDS and caller.quarantines is not None:
        raise PermissionDenied(f"{caller.actor} (role {caller.role}, limited to "
                               f"{', '.join(caller.quarantines) or 'no quarantine'}) may not "
                               f"run {command}: it shows every message, not only those quarantines")
    if not permits(caller, needed):
        what = "change the appliance" if needed == "configure" else needed
        raise PermissionDenied(f"{caller.actor} (role {caller.role}) may not run {command}: "
                               f"only a role that may {what} can")
