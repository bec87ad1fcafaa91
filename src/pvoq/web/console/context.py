"""What the console's pages reach: `request.app.state.ctx`, one `ConsoleContext`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pvoq.config.model import Config
from pvoq.maillog import MailLog
from pvoq.users import SessionStore, UserStore

if TYPE_CHECKING:
    from pvoq.quarantine.service import QuarantineService
    from pvoq.web.console.auth import User

Call = Callable[[str, dict[str, Any], "User"], Awaitable[dict[str, Any]]]


async def _no_commands(name: str, args: dict[str, Any], user: User) -> dict[str, Any]:
    from pvoq.admin.protocol import CommandError
    raise CommandError(f"Unknown command: {name}")


@dataclass
class ConsoleContext:
    """The appliance as the console sees it.

    `call(name, args, user)` runs the operator command *name* of the
    appliance's admin registry in-process as *user* (the same permission
    checks and audit as the CLI); it raises the command's `OperatorError`.
    `api`: the REST API application (manager), mounted under the same server.
    """

    role: str                       # "gateway" | "manager"
    hostname: str
    config: Callable[[], Config]
    maillog: MailLog
    users: UserStore
    service: QuarantineService | None = None
    # A gateway's local quarantines, asked for at each request: None while it keeps none
    # (centralized mode, never held mail here); a `pvo disable` makes them appear.
    local_service: Callable[[], QuarantineService | None] | None = None
    call: Call = _no_commands
    sessions: SessionStore = field(default_factory=SessionStore)
    api: Any = None                 # an ASGI application, or None
    https: bool = True              # cookies are `Secure` when served over TLS
    max_body_bytes: int = 1024 * 1024

    @property
    def has_quarantines(self) -> bool:
        """Whether the quarantine pages belong on this appliance's console."""
        return self.service is not None or self.local_service is not None

    def quarantine_service(self) -> QuarantineService | None:
        """The quarantine service the pages act on now (None: none on this appliance)."""
        if self.service is not None:
            return self.service
        return self.local_service() if self.local_service is not None else None
