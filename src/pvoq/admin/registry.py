"""How an operator command is declared: a method of a `CommandSet`, marked `@command(name)`.

Every operator command an appliance answers on its admin socket (and, for a
gateway, over SSH) is an async method of some `CommandSet` subclass that
takes the JSON arguments and returns `{"text": ..., "data": ...}` (either
may be missing), or raises an operator error (`CommandError`, exit 1)::

    class WorkQueueCommands(CommandSet):
        def __init__(self, workqueue: WorkQueue, maillog: MailLog) -> None:
            self.workqueue, self.maillog = workqueue, maillog

        @command("workqueue.pause")
        async def pause(self, args: dict[str, Any]) -> dict[str, Any]:
            ...

    WorkQueueCommands(gateway.workqueue, gateway.maillog).register(admin)

A set is given only the collaborators its commands use (queues, counters,
listeners...), never the whole appliance, so that what a command can touch
is visible in its constructor. The role wires its sets in its constructor.

A command that must know who runs it (to record them in the audit trail)
is marked `@command(name, peer=True)` and takes the connection's `Peer`
(`admin.protocol`: the kernel's credentials of the connected process) as
a second argument, never a name from the request::

        @command("quarantine.release", peer=True)
        async def release(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
            ...
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

CommandMethod = Callable[..., Awaitable[dict[str, Any]]]
F = TypeVar("F", bound=CommandMethod)

_MARK = "__pvoq_admin_command__"
_PEER = "__pvoq_admin_command_peer__"


class Registry(Protocol):
    """Where commands go: the admin server (`AdminServer.register`)."""

    def register(self, name: str, command: CommandMethod, *, peer: bool = False) -> None: ...


def command(name: str, *, peer: bool = False) -> Callable[[F], F]:
    """Mark a `CommandSet` method as the operator command *name* (e.g. `quarantine.list`);
    *peer*: the method takes the connection's `Peer` after its arguments."""
    def mark(fn: F) -> F:
        setattr(fn, _MARK, name)
        setattr(fn, _PEER, peer)
        return fn
    return mark


def wants_peer(method: object) -> bool:
    """Whether *method* was marked `@command(..., peer=True)`."""
    return bool(getattr(method, _PEER, False))


class CommandSet:
    """A group of operator commands over the collaborators they use (see module doc)."""

    @classmethod
    def command_names(cls) -> dict[str, str]:
        """Operator command name → method name, for every `@command` of this class."""
        found: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                name = getattr(value, _MARK, None)
                if name is not None:
                    found[name] = attr
        return found

    def register(self, registry: Registry) -> list[str]:
        """Register every command of this set; returns their names."""
        names = self.command_names()
        for name, attr in names.items():
            method = getattr(self, attr)
            if wants_peer(method):
                registry.register(name, method, peer=True)
            else:
                registry.register(name, method)
        return list(names)
