"""Tests for pvoq.admin.registry: `CommandSet` and `@command`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pvoq.admin.protocol import AdminServer
from pvoq.admin.registry import CommandSet, command


class Counters:
    def __init__(self) -> None:
        self.resets = 0


class CounterCommands(CommandSet):
    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    @command("resetcounters")
    async def reset(self, args: dict[str, Any]) -> dict[str, Any]:
        self.counters.resets += 1
        return {"text": "Counters reset."}

    @command("counters.show")
    async def show(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"data": {"resets": self.counters.resets, "args": args}}

    async def helper(self, args: dict[str, Any]) -> dict[str, Any]:
        """Not a command: not marked."""
        return {}


class MoreCounterCommands(CounterCommands):
    @command("counters.more")
    async def more(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"text": "more"}

    @command("counters.show")  # overrides the inherited command under the same name
    async def show(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"text": "shown by the subclass"}


class Recorder:
    """A registry that keeps what it is given."""

    def __init__(self) -> None:
        self.commands: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {}

    def register(self, name: str,
                 command: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
        self.commands[name] = command


def test_command_names_of_one_class() -> None:
    assert CounterCommands.command_names() == {"resetcounters": "reset",
                                               "counters.show": "show"}


def test_command_names_collected_across_subclasses() -> None:
    assert MoreCounterCommands.command_names() == {"resetcounters": "reset",
                                                   "counters.show": "show",
                                                   "counters.more": "more"}


def test_command_leaves_the_function_callable() -> None:
    counters = Counters()
    assert asyncio.run(CounterCommands(counters).reset({})) == {"text": "Counters reset."}
    assert counters.resets == 1


def test_register_binds_methods_to_the_instance() -> None:
    counters = Counters()
    registry = Recorder()
    names = CounterCommands(counters).register(registry)
    assert sorted(names) == ["counters.show", "resetcounters"]
    assert sorted(registry.commands) == ["counters.show", "resetcounters"]
    asyncio.run(registry.commands["resetcounters"]({}))
    assert counters.resets == 1
    assert asyncio.run(registry.commands["counters.show"]({"x": 1})) == {
        "data": {"resets": 1, "args": {"x": 1}}}


def test_register_uses_the_subclass_override() -> None:
    registry = Recorder()
    MoreCounterCommands(Counters()).register(registry)
    assert asyncio.run(registry.commands["counters.show"]({})) == {
        "text": "shown by the subclass"}
    assert asyncio.run(registry.commands["counters.more"]({})) == {"text": "more"}


def test_two_sets_register_on_one_server(tmp_path: Path) -> None:
    class Other(CommandSet):
        @command("other")
        async def other(self, args: dict[str, Any]) -> dict[str, Any]:
            return {}

    server = AdminServer(tmp_path / "admin.sock")
    CounterCommands(Counters()).register(server)
    Other().register(server)
    assert sorted(server.commands) == ["counters.show", "other", "resetcounters"]


def test_duplicate_name_refused_by_the_admin_server(tmp_path: Path) -> None:
    server = AdminServer(tmp_path / "admin.sock")
    CounterCommands(Counters()).register(server)
    with pytest.raises(ValueError, match="'resetcounters' registered twice"):
        CounterCommands(Counters()).register(server)
