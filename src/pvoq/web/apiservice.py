"""The REST API service of an appliance: its application, and its server's start, reload and stop.

Both roles serve the REST API v2.0 (`web.api`) the same way, over their own
`QuarantineService` (the manager's quarantines, a gateway's local ones):
`ApiService` builds the application with `<api>`'s tokens and limits (a
token whose user is one of the appliance's users acts with that user's
role), serves it on `<api>`'s address and port when `<api>` is enabled with
a port, and restarts, starts or stops it when a reload changes `<api>`. The
server binds at start but builds the application, and imports FastAPI and
uvicorn, on its first connection (`web.server.Deferred`): an appliance whose
API nobody calls does not load them, and a gateway does not open its local
quarantine store for it. The console mounts the same application (`app()`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pvoq.config.model import Config
from pvoq.maillog import MailLog
from pvoq.users.store import UserStore

if TYPE_CHECKING:
    from pvoq.quarantine.service import QuarantineService
    from pvoq.web.server import ApiServer, Deferred

# What building the application imports: loaded in a thread on the first connection.
API_MODULES = ("pvoq.web.api", "uvicorn")


class ApiService:
    """The REST API of one appliance (see the module docstring).

    *config* gives the configuration in force, *service* the quarantine service
    the API acts on (called when the application is built), *users* the
    appliance's users (the owners of user tokens).
    """

    def __init__(self, *, config: Callable[[], Config],
                 service: Callable[[], QuarantineService],
                 users: UserStore, maillog: MailLog) -> None:
        self.config = config
        self.service = service
        self.users = users
        self.maillog = maillog
        self.server: ApiServer | None = None

    @property
    def address(self) -> str | None:
        """Where the API listens (None when it does not): for the ready line."""
        return self.server.address if self.server is not None else None

    @property
    def port(self) -> int | None:
        return self.server.port if self.server is not None else None

    def app(self) -> Any:
        """The REST API v2.0 application over the service, with `<api>`'s tokens."""
        from pvoq.web.api import create_app

        api = self.config().api

        def role_of(name: str) -> tuple[str, tuple[str, ...] | None] | None:
            account = self.users.get(name)
            return (account.role, account.quarantines) if account is not None else None

        def token_owner(secret: str) -> tuple[str, str, tuple[str, ...] | None] | None:
            account = self.users.token_owner(secret)
            return ((account.name, account.role, account.quarantines)
                    if account is not None else None)

        return create_app(self.service(), api.tokens, max_body_bytes=api.max_body_bytes,
                          max_mids=api.max_mids, role_of=role_of, token_owner=token_owner)

    def deferred(self) -> Deferred:
        """The application, built on its server's first connection."""
        from pvoq.web.server import Deferred

        return Deferred(self.app, API_MODULES)

    async def start(self) -> None:
        """Listen on `<api>`'s address and port, if the configuration in force asks for
        the API (enabled, with a port)."""
        api = self.config().api
        if not (api.enabled and api.port) or self.server is not None:
            return
        from pvoq.web.server import ApiServer

        self.server = ApiServer(self.deferred(), api.address, api.port)
        self.server.start()
        self.maillog.info(f"REST API listening on {api.address} port {api.port}")

    async def after_reload(self, old: Config, new: Config) -> None:
        """A changed `<api>` takes effect at once: the server restarts in place (new
        tokens, limits, address), starts, or stops. A new address that cannot be bound
        leaves the server where it was (a Warning says so)."""
        api = new.api
        if old.api == api:
            return
        if not (api.enabled and api.port):
            if self.server is not None:
                await self.server.stop()
                self.server = None
                self.maillog.info("REST API stopped: no <api> in the configuration")
            return
        if self.server is None:
            await self.start()
            return
        try:
            await self.server.restart(self.deferred(), api.address, api.port, None)
        except OSError as exc:
            self.maillog.warning(f"REST API kept on {self.server.address} port "
                                 f"{self.server.port}: cannot listen on {api.address} port "
                                 f"{api.port}: {exc.strerror}")
            return
        self.maillog.info(f"REST API restarted on {api.address} port {self.server.port}")

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
