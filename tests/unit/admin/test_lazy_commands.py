"""`LazyCommands`: names registered at once, the real command set built on the first call."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pvoq.admin.lazy import LazyCommands
from pvoq.admin.protocol import Peer
from pvoq.admin.registry import CommandMethod, CommandSet, command, wants_peer
from pvoq.gateway.migration import GatewayMigrationCommands
from pvoq.gateway.role import MIGRATION_COMMANDS, MIGRATION_PLAN


class _Registry:
    def __init__(self) -> None:
        self.commands: dict[str, tuple[CommandMethod, bool]] = {}

    def register(self, name: str, command: CommandMethod, *, peer: bool = False) -> None:
        self.commands[name] = (command, peer)


class _Echo(CommandSet):
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @command("echo.one")
    async def one(self, args: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(args)
        return {"data": {"one": args}}

    @command("echo.peer", peer=True)
    async def with_peer(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return {}


def test_the_set_is_built_on_the_first_call_and_then_kept() -> None:
    built: list[_Echo] = []

    def build() -> _Echo:
        built.append(_Echo())
        return built[-1]

    registry = _Registry()
    assert LazyCommands(["echo.one"], build).register(registry) == ["echo.one"]
    assert built == []                                  # registering builds nothing
    call, peer = registry.commands["echo.one"]
    assert peer is False
    assert asyncio.run(call({"x": 1})) == {"data": {"one": {"x": 1}}}
    assert asyncio.run(call({"x": 2})) == {"data": {"one": {"x": 2}}}
    assert len(built) == 1 and built[0].calls == [{"x": 1}, {"x": 2}]


def test_a_name_the_set_does_not_have_or_a_peer_command_is_refused_by_name() -> None:
    lazy = LazyCommands(["echo.none", "echo.peer"], _Echo)
    with pytest.raises(LookupError, match="echo.none"):
        lazy.target("echo.none")
    with pytest.raises(LookupError, match="echo.peer"):
        lazy.target("echo.peer")


def test_the_gateways_lazy_migration_commands_are_the_real_sets() -> None:
    names = GatewayMigrationCommands.command_names()
    assert sorted(MIGRATION_COMMANDS) == sorted(names)
    assert not any(wants_peer(getattr(GatewayMigrationCommands, attr))
                   for attr in names.values())


def test_the_gateway_looks_for_the_plan_where_the_migrator_keeps_it(tmp_path: Path) -> None:
    from pvoq.gateway.migration import Migrator

    migrator = Migrator(data_dir=tmp_path, config=lambda: None,  # type: ignore[arg-type,return-value]
                        store=lambda: None, mode=lambda: "local",
                        connect=lambda: None, maillog=None)  # type: ignore[arg-type,return-value]
    assert migrator.path == tmp_path / MIGRATION_PLAN
