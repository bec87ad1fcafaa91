"""Where does a gateway want its released mail? The manager's SSH lookup cache.

The release queue asks synchronously (`CpqDestination.target` runs on every
attempt), SSH is slow and may fail: `GatewayLocator.address()` answers from
the cache and, on a miss, starts one background lookup and answers None (the
queue defers the release). A finished lookup fills the cache and, if the
answer is new, wakes `the.cpq.release.host`. A failed delivery to a cached
address invalidates it, so the next attempt asks again.

An SSH failure is logged as an AsyncOS application fault naming the gateway
and the cause, and logged as cleared on the next successful lookup; the
release stays queued meanwhile. Only gateways added with `gateway add` (a
pin exists) are looked up; for the others the configured address is used.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, cast

from pvoq import metrics
from pvoq.cpq.client import CpqDestination
from pvoq.maillog import MailLog
from pvoq.remote.client import SshClient
from pvoq.remote.keys import SshFault
from pvoq.smtp.client import DeliveryError, SmtpConnection


def fault_line(name: str, cause: str) -> str:
    """The mail_logs text of a failed lookup (logged at level Critical)."""
    detail = f"ssh lookup of {name} failed: {cause}".replace("'", '"')
    return f"An application fault occurred: ('{detail}')"


class GatewayLocator:
    """The cache of gateway PVO listener addresses, filled over SSH."""

    def __init__(self, client: SshClient, maillog: MailLog,
                 on_new_answer: Callable[[], None]) -> None:
        self.client = client
        self.log = maillog
        self.on_new_answer = on_new_answer
        self._cache: dict[str, tuple[str, int]] = {}
        self._last: dict[str, tuple[str, int]] = {}
        self._faults: dict[str, str] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def enrolled(self, name: str) -> bool:
        return self.client.pins.get(name) is not None

    def address(self, name: str) -> tuple[str, int] | None:
        """The cached address of *name*'s PVO listener; None (and a lookup) on a miss."""
        key = name.lower()
        found = self._cache.get(key)
        if found is None:
            self.refresh(name)
        return found

    def cached(self, name: str) -> tuple[str, int] | None:
        """The cached address of *name*'s PVO listener, if any; unlike `address`, a miss
        starts no lookup (operator `gateway list`)."""
        return self._cache.get(name.lower())

    def fault(self, name: str) -> str | None:
        return self._faults.get(name.lower())

    def refresh(self, name: str) -> None:
        key = name.lower()
        running = self._tasks.get(key)
        if running is not None and not running.done():
            return
        self._tasks[key] = asyncio.ensure_future(self._lookup(name))

    def invalidate(self, name: str) -> None:
        self._cache.pop(name.lower(), None)

    def invalidate_address(self, host: str, port: int) -> None:
        """A delivery to host:port failed: forget every gateway cached there."""
        for key, where in list(self._cache.items()):
            if where == (host, port):
                del self._cache[key]
                self.log.info(f"SSH lookup cache of {key}: delivery to {host} port {port} "
                              "failed, asking the gateway again")
                self.refresh(key)

    def reset(self, name: str) -> None:
        """Forget what *name* answered (it was added again); a fault stays until cleared."""
        key = name.lower()
        self._cache.pop(key, None)
        self._last.pop(key, None)

    def forget(self, name: str) -> None:
        self.reset(name)
        self._faults.pop(name.lower(), None)

    async def lookup_now(self, name: str) -> tuple[str, int]:
        """Ask *name* now (operator `gateway test`); raises `SshFault`."""
        await self._lookup(name, raise_fault=True)
        return self._cache[name.lower()]

    async def _lookup(self, name: str, *, raise_fault: bool = False) -> None:
        key = name.lower()
        try:
            answer = await self.client.listener(name)
        except SshFault as exc:
            self._faults[key] = str(exc)
            metrics.ssh_lookup_failed(name)
            self.log.critical(fault_line(name, str(exc)))
            if raise_fault:
                raise
            return
        where = (answer.address, answer.port)
        self._cache[key] = where
        cleared = self._faults.pop(key, None)
        changed = self._last.get(key) != where
        self._last[key] = where
        self.log.info(f"SSH lookup of {name}: PVO listener on interface {answer.interface} "
                      f"({answer.address}) port {answer.port}")
        if cleared is not None:
            self.log.info(f"SSH lookup of {name} succeeded: application fault cleared")
        if changed or cleared is not None:
            self.on_new_answer()

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()


class _WatchedConnection:
    """A delivery connection that reports where it failed to the locator."""

    def __init__(self, inner: SmtpConnection, locator: GatewayLocator) -> None:
        self._inner = inner
        self._locator = locator
        self._where: tuple[str, int] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def open(self, host: str, port: int) -> None:
        self._where = (host, port)
        try:
            await self._inner.open(host, port)
        except DeliveryError:
            self._locator.invalidate_address(host, port)
            raise

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._inner.send(*args, **kwargs)
        except DeliveryError:
            if self._where is not None:
                self._locator.invalidate_address(*self._where)
            raise


def watched(connection: SmtpConnection, locator: GatewayLocator) -> SmtpConnection:
    """*connection*, invalidating the locator's cache when a delivery fails."""
    return cast(SmtpConnection, _WatchedConnection(connection, locator))


class LookupCpqDestination(CpqDestination):
    """`the.cpq.release.host`: a failed delivery invalidates the SSH lookup cache."""

    def __init__(self, name: str, *, locator: GatewayLocator, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.locator = locator

    def connection(self) -> SmtpConnection:
        return watched(super().connection(), self.locator)
