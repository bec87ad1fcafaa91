"""`pvo enable|disable|status`: the readiness probe first, then one element of the file."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from pvoq.admin.protocol import CommandError, Peer
from pvoq.config.loader import load_config
from pvoq.config.writer import ConfigEditError
from pvoq.gateway import Gateway
from pvoq.gateway.enable import PvoModeCommands, set_enabled

PEER = Peer(pid=1, uid=0, gid=0, user="root")


def reloader(gw: Gateway) -> Any:
    """What the reload does that matters here (the listeners are not started): the file
    read again and put in force in one assignment."""
    async def reload() -> str:
        gw.config = load_config(gw.config.path)
        return "reloaded"
    return reload


def disabled(gw: Gateway) -> bytes:
    """Make the gateway's file (and the configuration in force) local mode."""
    path = gw.config.path
    data = path.read_bytes().replace(b"<enabled>true</enabled>", b"<enabled>false</enabled>", 1)
    path.write_bytes(data)
    asyncio.run(reloader(gw)())
    assert gw.pvo_mode.mode() == "local"
    return data


def commands(gw: Gateway, ready: bool, text: str = "the manager at 127.0.0.1:7025 answered: "
             "250 ready") -> PvoModeCommands:
    async def readiness() -> tuple[bool, str, list[dict[str, Any]]]:
        assert gw.pvo_mode.mode() == "local"
        return ready, text, []
    made = PvoModeCommands(lambda: gw.config, reloader(gw), readiness, gw.local.held_count,
                           gw.maillog)
    return made


def test_set_enabled_rewrites_only_the_element() -> None:
    data = (b"<config>\n  <pvo_quarantines>\n    <enabled>false</enabled> <!-- keep -->\n"
            b"    <port>7025</port>\n  </pvo_quarantines>\n</config>\n")
    assert set_enabled(data, True) == data.replace(b"false", b"true")
    bare = b"<config>\n  <pvo_quarantines>\n    <port>7025</port>\n  </pvo_quarantines>\n</config>\n"
    assert set_enabled(bare, False) == (b"<config>\n  <pvo_quarantines>\n    <port>7025</port>\n"
                                        b"    <enabled>false</enabled>\n  </pvo_quarantines>\n"
                                        b"</config>\n")
    with pytest.raises(ConfigEditError, match="pvo_quarantines"):
        set_enabled(b"<config><system/></config>", True)


def test_enable_is_refused_with_the_reason_and_changes_nothing(gateway: Gateway) -> None:
    data = disabled(gateway)
    cmds = commands(gateway, False, "the manager at 127.0.0.1:7025 cannot be used: "
                                    "connection refused")
    with pytest.raises(CommandError, match="^Cannot enable: the manager at 127.0.0.1:7025 "
                                           "cannot be used: connection refused"):
        asyncio.run(cmds.enable({}, PEER))
    assert gateway.config.path.read_bytes() == data
    assert gateway.pvo_mode.mode() == "local" and not gateway.config.pvo.enabled


def test_enable_writes_reloads_and_logs_then_disable_switches_back(gateway: Gateway) -> None:
    data = disabled(gateway)
    cmds = commands(gateway, True)
    answer = asyncio.run(cmds.enable({}, PEER))
    assert "enabled" in answer["text"] and answer["data"]["mode"] == "centralized"
    assert gateway.config.pvo.enabled and gateway.pvo_mode.mode() == "centralized"
    written = gateway.config.path.read_bytes()
    assert written == data.replace(b"<enabled>false</enabled>", b"<enabled>true</enabled>", 1)
    assert load_config(gateway.config.path).pvo.enabled  # a restart keeps it
    gateway.maillog.flush()
    assert ("Info: Centralized PVO quarantines enabled by root: caught mail goes to the "
            "manager") in gateway.maillog.path.read_text()
    again = asyncio.run(cmds.enable({}, PEER))
    assert "already enabled" in again["text"]
    asyncio.run(cmds.disable({}, PEER))
    assert gateway.config.path.read_bytes() == data and not gateway.config.pvo.enabled
    assert cmds.mode() == "local"


def test_status_says_the_messages_still_held_locally(gateway: Gateway) -> None:
    cmds = commands(gateway, True)
    assert asyncio.run(cmds.status({}))["data"]["description"] == "centralized"
    gateway.local.held_count = lambda: 3  # type: ignore[method-assign]
    cmds.held_locally = gateway.local.held_count
    status = asyncio.run(cmds.status({}))
    assert status["data"]["description"] == ("centralized, 3 messages still held locally "
                                             "(migration pending)")
    assert status["text"].startswith("PVO quarantines: centralized, 3 messages")


def test_a_refused_reload_puts_the_old_file_back(gateway: Gateway) -> None:
    data = disabled(gateway)

    async def refusing() -> str:
        raise CommandError("Configuration reload refused")
    cmds = PvoModeCommands(lambda: gateway.config, refusing,
                           commands(gateway, True).readiness, gateway.local.held_count,
                           gateway.maillog)
    with pytest.raises(CommandError, match="the old one is back"):
        asyncio.run(cmds.enable({}, PEER))
    assert gateway.config.path.read_bytes() == data and cmds.mode() == "local"


def test_a_flag_overridden_below_the_top_level_is_refused_and_the_file_restored(
        gateway: Gateway) -> None:
    """A clustered file whose group or machine sets the flag too: the reload keeps local."""
    data = disabled(gateway)

    async def overridden() -> str:
        gateway.config = load_config(gateway.config.path)
        gateway.config = dataclasses.replace(
            gateway.config, pvo=dataclasses.replace(gateway.config.pvo, enabled=False))
        return "reloaded"
    cmds = PvoModeCommands(lambda: gateway.config, overridden,
                           commands(gateway, True).readiness, gateway.local.held_count,
                           gateway.maillog)
    with pytest.raises(CommandError, match="overrides it"):
        asyncio.run(cmds.enable({}, PEER))
    assert gateway.config.path.read_bytes() == data and cmds.mode() == "local"
