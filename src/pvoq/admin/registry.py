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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

CommandMethod = Callable[..., Awaitable[dict[str, Any]]]
F = TypeVar("F", bound=CommandMethod)

_MARK = "__pvoq_admin_command__"


class Registry(Protocol):
    """Where commands go: the admin server (`AdminServer.register`)."""

    def register(self, name: str, command: Callable[[dict[str, Any]],
                                                    Awaitable[dict[str, Any]]]) -> None: ...


def command(name: str) -> Callable[[F], F]:
    """Mark a `CommandSet` method as the operator command *name* (e.g. `quarantine.list`)."""
    def mark(fn: F) -> F:
        setattr(fn, _MARK, name)
        return fn
    return mark


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
            registry.register(name, getattr(self, attr))
        return list(names)
