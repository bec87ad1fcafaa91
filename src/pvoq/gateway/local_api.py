"""The REST API v2.0 over the gateway's local quarantines, as the manager serves its own.

`LocalApi` builds the API application over `LocalQuarantines.service` with
`<api>`'s tokens (built, with the local store, when first served; a token whose user is one of the gateway's users acts with
that user's role), serves it on `<api>`'s address and port when configured,
and restarts, starts or stops it when a reload changes `<api>`. The console
mounts the same application (`Gateway.console_context`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pvoq.config.model import Config
from pvoq.maillog import MailLog
from pvoq.users.store import UserStore

if TYPE_CHECKING:
    from pvoq.quarantine.service import QuarantineService
    from pvoq.web.server import ApiServer


class LocalApi:
    """The REST API of the local quarantines (see the module docstring)."""

    def __init__(self, *, config: Callable[[], Config],
                 service: Callable[[], QuarantineService],
                 users: UserStore, maillog: MailLog) -> None:
        self.config = config
        self.service = service
        self.users = users
        self.maillog = maillog
        self.server: ApiServer | None = None

    def app(self) -> Any:
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

    async def start(self) -> None:
        api = self.config().api
        if api.enabled and api.port:
            from pvoq.web.server import ApiServer

            self.server = ApiServer(self.app(), api.address, api.port)
            self.server.start()
            self.maillog.info(f"REST API listening on {api.address} port {api.port}")

    async def after_reload(self) -> None:
        api = self.config().api
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
            await self.server.restart(self.app(), api.address, api.port, None)
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
