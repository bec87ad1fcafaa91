"""The appliance's SMTP listeners: bound servers, connection gates, suspension.

`ListenerSet` binds each configured listener on its interface address,
keeps the `ConnectionGate` of each (open sessions, closed on suspension),
rebinds a listener whose interface or port a reload changed, and answers
what the operator commands ask: which listeners exist, which are
suspended, whether the appliance is online, how many sessions are open.
How a session is made (handler, TLS, context) is the appliance's
`SessionFactory`, called once per bind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from pvoq.admin.protocol import CommandError
from pvoq.config.model import Config, Listener
from pvoq.maillog import MailLog
from pvoq.smtp.server import ConnectionGate, PvoqSMTP, start_listener

# (listener, its gate) → the protocol factory its server calls per connection
SessionFactory = Callable[[Listener, ConnectionGate], Callable[[], PvoqSMTP]]


def interface_ip(config: Config, name: str) -> str:
    """The address of the interface *name* (the loader checks interface references)."""
    interface = config.interface(name)
    assert interface is not None, "the loader checks interface references"
    return interface.ip


class ListenerSet:
    """The listeners of one appliance; *config* gives the running configuration."""

    def __init__(self, config: Callable[[], Config], maillog: MailLog,
                 sessions: SessionFactory) -> None:
        self.config = config
        self.maillog = maillog
        self.sessions = sessions
        self.servers: dict[str, asyncio.AbstractServer] = {}
        self.gates: dict[str, ConnectionGate] = {}
        self.suspended: set[str] = set()
        self._bound: dict[str, tuple[str, int]] = {}
        self._background: set[asyncio.Future[None]] = set()

    # -- binding -------------------------------------------------------------------
    async def bind_all(self) -> None:
        """Bind every configured listener (at start)."""
        for listener in self.config().listeners:
            await self.bind(listener)

    async def bind(self, listener: Listener) -> None:
        gate = self.gates[listener.name] = ConnectionGate()
        factory = self.sessions(listener, gate)
        ip = interface_ip(self.config(), listener.interface_name)
        try:
            self.servers[listener.name] = await start_listener(listener, ip, factory)
        except OSError as exc:
            self.maillog.critical(f"Listener {listener.name} cannot bind {ip}:"
                                  f"{listener.port}: {exc.strerror}")
            raise
        self._bound[listener.name] = (ip, listener.port)
        self.maillog.info(f"Listener {listener.name} ({listener.protocol}) listening on "
                          f"{ip} port {listener.port}")

    async def unbind(self, name: str) -> None:
        server = self.servers.pop(name, None)
        self._bound.pop(name, None)
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
            self.maillog.info(f"Listener {name} closed")

    async def rebind(self, new: Config) -> None:
        """After a reload to *new*: rebind what moved, bind what was added, unbind the rest."""
        wanted = {x.name: (interface_ip(new, x.interface_name), x.port) for x in new.listeners}
        for name in list(self._bound):
            if wanted.get(name) != self._bound[name]:
                await self.unbind(name)
        for listener in new.listeners:
            if listener.name not in self._bound and listener.name not in self.suspended:
                await self.bind(listener)

    async def close(self) -> None:
        """Stop accepting everywhere (at stop); open sessions are left to finish."""
        for server in self.servers.values():
            server.close()
        for server in self.servers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def close_sessions(self, timeout_s: float = 2.0) -> None:
        """Close every open session (at stop, before the logs close), and give each its
        `connection_lost` (its `ICID ... close` line) within *timeout_s*."""
        for gate in self.gates.values():
            gate.close_all()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.connections_in() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

    # -- what the operator commands ask -----------------------------------------------
    def names(self, which: str) -> list[str]:
        """`all` or one listener's name (the cpq_listener included) → names; unknown raises."""
        names = [x.name for x in self.config().listeners]
        if which == "all":
            return names
        if which not in names:
            raise CommandError(f"Unknown listener: {which} (listeners: {', '.join(names)})")
        return [which]

    async def suspend(self, names: list[str], *, delay_s: float = 0.0) -> list[str]:
        """Stop accepting on *names*; open sessions get *delay_s* seconds, then are closed."""
        done = []
        for name in names:
            if name in self.suspended:
                continue
            self.suspended.add(name)
            await self.unbind(name)
            done.append(name)
            self.maillog.info(f"Listener {name} suspended by operator")
        gates = [self.gates[n] for n in done if n in self.gates]

        async def close_later() -> None:
            await asyncio.sleep(delay_s)
            closed = sum(g.close_all() for g in gates)
            if closed:
                self.maillog.info(f"{closed} sessions closed on suspended listeners")
        if gates:
            self._background.add(task := asyncio.ensure_future(close_later()))
            task.add_done_callback(self._background.discard)
        return done

    async def resume(self, names: list[str]) -> list[str]:
        done = []
        for name in names:
            if name not in self.suspended:
                continue
            listener = next(x for x in self.config().listeners if x.name == name)
            await self.bind(listener)
            self.suspended.discard(name)
            done.append(name)
            self.maillog.info(f"Listener {name} resumed by operator")
        return done

    @property
    def online(self) -> bool:
        """AsyncOS's "System status: Online": receiving is not suspended everywhere."""
        return any(x.name not in self.suspended for x in self.config().listeners)

    def cpq_suspended(self) -> bool:
        """True when no CPQ listener accepts connections (suspended or not bound)."""
        cpq = self.config().cpq_listener
        return cpq is None or cpq.name not in self.servers

    def connections_in(self) -> int:
        """Open inbound sessions, all listeners together."""
        return sum(g.active for g in self.gates.values())
