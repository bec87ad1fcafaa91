"""Operator commands whose `CommandSet` is built, and its module imported, on their first call.

A part an idle appliance seldom uses (the migration wizard's gateway side)
need not be loaded to answer its commands: `LazyCommands(names, build)`
registers *names* at once, and the first call of any of them runs *build()*
(which imports the module and makes the real set), then every call goes to
the real set's method of that name. The names are given, not read from the
class, so the module stays unloaded; a test holds them equal to the class's
`command_names()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pvoq.admin.registry import CommandMethod, CommandSet, Registry, wants_peer


class LazyCommands:
    """Commands *names* of the `CommandSet` *build()* makes on the first call."""

    def __init__(self, names: Iterable[str], build: Callable[[], CommandSet]) -> None:
        self.names = tuple(names)
        self.build = build
        self._built: CommandSet | None = None

    def target(self, name: str) -> CommandMethod:
        """The real set's method for *name* (the set built now if it is not yet)."""
        if self._built is None:
            self._built = self.build()
        attr = self._built.command_names().get(name)
        if attr is None:
            raise LookupError(f"{type(self._built).__name__} has no command {name!r}")
        method: CommandMethod = getattr(self._built, attr)
        if wants_peer(method):
            raise LookupError(f"command {name!r} takes a peer: register it at once")
        return method

    def register(self, registry: Registry) -> list[str]:
        for name in self.names:
            registry.register(name, self._forward(name))
        return list(self.names)

    def _forward(self, name: str) -> CommandMethod:
        async def call(args: dict[str, Any]) -> dict[str, Any]:
            return await self.target(name)(args)
        return call
