"""The operator commands of the SSH link and of the listener list (`remote.commands`).

The gateway's `pvo.listener` and `ssh.*`, the manager's `gateway.*` and
`listeners` on both, over real configurations from `pvoq init`; the manager's
`gateway add|list|test|remove` talk to a real gateway SSH command service on
127.0.0.1 whose `pvo listener` is the gateway's own command set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pvoq.admin.protocol import AdminServer, CommandError
from pvoq.config.loader import load_config
from pvoq.config.model import Config
from pvoq.config.template import ApplianceSpec
from pvoq.deploy import init_appliance
from pvoq.maillog import MailLog
from pvoq.remote.client import SshClient
from pvoq.remote.commands import GatewayLinkCommands, ListenerInfoCommands, ManagerLinkCommands
from pvoq.remote.keys import fingerprint, public_line
from pvoq.remote.lookup import GatewayLocator
from pvoq.remote.service import CommandService

GATEWAY = "gw.test"
MANAGER = "manager.test"
CPQ_PORT = 7026


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def gateway_config(root: Path) -> Config:
    return load_config(init_appliance(root / "gw", ApplianceSpec(
        role="gateway", hostname=GATEWAY, serial="SN-G", cpq_port=CPQ_PORT),
        ca_dir=root / "ca"))


def manager_config(root: Path) -> Config:
    return load_config(init_appliance(root / "mgr", ApplianceSpec(
        role="manager", hostname=MANAGER, serial="SN-M",
        gateways=[(GATEWAY, "127.0.0.1", CPQ_PORT)]), ca_dir=root / "ca"))


class Gateway:
    """The gateway's link commands, and its SSH command service once started."""

    def __init__(self, root: Path) -> None:
        self.config = gateway_config(root)
        self.log = MailLog(root / "gw-logs", appliance=f"gateway {GATEWAY}", serial="SN-G")
        self.admin = AdminServer(root / "gw-admin.sock")
        self.service: CommandService | None = None
        GatewayLinkCommands(lambda: self.config, lambda: self.service).register(self.admin)
        ListenerInfoCommands(lambda: self.config).register(self.admin)

    async def start_ssh(self, root: Path) -> CommandService:
        self.service = CommandService(data_dir=root / "gw-ssh", hostname=GATEWAY,
                                      host="127.0.0.1", port=free_port(), maillog=self.log,
                                      commands=self.admin.commands)
        await self.service.start()
        return self.service

    async def cmd(self, command: str, /, **args: Any) -> dict[str, Any]:
        return await self.admin.commands[command](args)


class Manager:
    """The manager's `gateway.*` over its SSH client and gateway locator."""

    def __init__(self, root: Path) -> None:
        self.config = manager_config(root)
        self.log = MailLog(root / "mgr-logs", appliance=f"manager {MANAGER}", serial="SN-M")
        self.client = SshClient(root / "mgr-ssh", hostname=MANAGER, timeout_s=10)
        self.wakes = 0
        self.locator = GatewayLocator(self.client, self.log, self.wake)
        self.admin = AdminServer(root / "mgr-admin.sock")
        self.names = ManagerLinkCommands(lambda: self.config, self.client, self.locator,
                                         self.wake).register(self.admin)

    def wake(self) -> None:
        self.wakes += 1

    async def cmd(self, command: str, /, **args: Any) -> dict[str, Any]:
        return await self.admin.commands[command](args)

    def lines(self) -> list[str]:
        self.log.flush()
        return self.log.path.read_text().splitlines()


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


async def refused(call: Awaitable[dict[str, Any]]) -> str:
    with pytest.raises(CommandError) as caught:
        await call
    return str(caught.value)


class TestListenerInfo:
    def test_the_cpq_listener_is_hidden_unless_all(self, tmp_path: Path) -> None:
        gateway = Gateway(tmp_path)

        async def body() -> None:
            shown = (await gateway.cmd("listeners"))["data"]["listeners"]
            assert shown == [{"name": "IncomingMail", "protocol": "SMTP", "type": "public",
                              "interface": "Incoming Mail", "address": "127.0.0.1",
                              "port": 25, "hidden": False, "generated": False,
                              "sender_groups": shown[0]["sender_groups"]}]
            assert shown[0]["sender_groups"]
            everything = (await gateway.cmd("listeners", all=True))["data"]["listeners"]
            assert [(x["name"], x["hidden"], x["port"]) for x in everything] == [
                ("IncomingMail", False, 25), ("cpq_listener", True, CPQ_PORT)]
            assert (await gateway.cmd("listeners"))["data"]["not_shown"] == 1  # hidden
            assert (await gateway.cmd("listeners", all=True))["data"]["not_shown"] == 0
        run(body)

    def test_it_reads_the_running_configuration(self, tmp_path: Path) -> None:
        gateway = Gateway(tmp_path)

        async def body() -> None:
            gateway.config = dataclasses.replace(gateway.config, listeners=())
            assert (await gateway.cmd("listeners", all=True))["data"] == {
                "listeners": [], "not_shown": 0}
        run(body)


class TestGatewayLink:
    def test_registered_names(self, tmp_path: Path) -> None:
        assert set(Gateway(tmp_path).admin.commands) == {
            "pvo.listener", "ssh.token", "ssh.authorize", "ssh.show", "listeners"}

    def test_pvo_listener(self, tmp_path: Path) -> None:
        gateway = Gateway(tmp_path)

        async def body() -> None:
            assert await gateway.cmd("pvo.listener") == {"data": {
                "hostname": GATEWAY, "interface": "Incoming Mail", "address": "127.0.0.1",
                "port": CPQ_PORT}}
            gateway.config = dataclasses.replace(
                gateway.config, pvo=dataclasses.replace(gateway.config.pvo, enabled=False))
            assert await refused(gateway.cmd("pvo.listener")) == \
                "centralized PVO quarantines are disabled on this gateway"
        run(body)

    def test_ssh_commands_need_the_service(self, tmp_path: Path) -> None:
        gateway = Gateway(tmp_path)

        async def body() -> None:
            for name in ("ssh.token", "ssh.authorize", "ssh.show"):
                assert await refused(gateway.cmd(name)) == \
                    "the SSH command service is not enabled (<ssh><enabled>)"
        run(body)

    def test_token_authorize_and_show(self, tmp_path: Path) -> None:
        gateway = Gateway(tmp_path)
        manager_key = SshClient(tmp_path / "mgr-ssh", hostname=MANAGER).key

        async def body() -> None:
            service = await gateway.start_ssh(tmp_path)
            try:
                token = await gateway.cmd("ssh.token", ttl_s=90)
                value = token["data"]["token"]
                assert token["text"] == (f"One-time enrolment token (valid 90s): {value}\n"
                                         f"SSH host key of this gateway: {service.fingerprint}")
                assert token["data"]["fingerprint"] == service.fingerprint
                assert service.tokens.consume(value)
                line = public_line(manager_key, MANAGER)
                fp = fingerprint(manager_key)
                assert await gateway.cmd("ssh.authorize", key=line, name="mgr") == {
                    "text": f"Key {fp} (mgr) authorized."}
                assert await gateway.cmd("ssh.authorize", key=line) == {
                    "text": f"Key {fp} (manager) was already authorized."}
                assert (await refused(gateway.cmd("ssh.authorize", key="ssh-rsa nonsense"))
                        ).startswith("not an OpenSSH public key")
                assert await gateway.cmd("ssh.show") == {"data": {
                    "address": "127.0.0.1", "port": service.port,
                    "fingerprint": service.fingerprint,
                    "authorized_keys": [{"fingerprint": fp, "name": "mgr"}]}}
                gateway.log.flush()
                assert f"SSH key {fp} of mgr installed from a key file" in \
                    gateway.log.path.read_text()
            finally:
                await service.stop()
        run(body)


class TestManagerLink:
    def test_registered_names(self, tmp_path: Path) -> None:
        assert sorted(Manager(tmp_path).names) == [
            "gateway.add", "gateway.list", "gateway.pubkey", "gateway.remove", "gateway.test"]

    def test_pubkey(self, tmp_path: Path) -> None:
        manager = Manager(tmp_path)

        async def body() -> None:
            assert await manager.cmd("gateway.pubkey") == {
                "text": public_line(manager.client.key, MANAGER)}
        run(body)

    def test_errors_before_any_add(self, tmp_path: Path) -> None:
        manager = Manager(tmp_path)

        async def body() -> None:
            assert await refused(manager.cmd("gateway.add", name="other.test")) == (
                "gateway other.test is not in <pvo_quarantines><gateways>; "
                "add its record there first")
            assert await refused(manager.cmd("gateway.remove", name=GATEWAY)) == \
                f"gateway {GATEWAY} has no SSH pin"
            assert await refused(manager.cmd("gateway.test", name=GATEWAY)) == \
                f"gateway {GATEWAY} has not been added (gateway add)"
            assert (await manager.cmd("gateway.list"))["data"] == {"gateways": [
                {"name": GATEWAY, "cpq_address": "127.0.0.1", "cpq_port": CPQ_PORT,
                 "ssh": None, "fingerprint": None, "looked_up": None, "fault": None}]}
        run(body)

    def test_a_failed_add_is_an_operator_error_and_a_critical_line(self,
                                                                   tmp_path: Path) -> None:
        manager = Manager(tmp_path)

        async def body() -> None:
            port = free_port()  # nothing listens there
            error = await refused(manager.cmd("gateway.add", name=GATEWAY, host="127.0.0.1",
                                              ssh_port=port, token="t"))
            assert error.startswith(f"gateway add {GATEWAY} failed: ")
            assert any(f"SSH add of gateway {GATEWAY} failed: " in x for x in manager.lines())
            assert manager.wakes == 0
        run(body)

    def test_add_list_test_remove_against_a_real_gateway(self, tmp_path: Path) -> None:
        gateway = Gateway(tmp_path)
        manager = Manager(tmp_path)

        async def body() -> None:
            service = await gateway.start_ssh(tmp_path)
            try:
                token = (await gateway.cmd("ssh.token"))["data"]["token"]
                added = await manager.cmd("gateway.add", name=GATEWAY, host="127.0.0.1",
                                          ssh_port=service.port, token=token)
                fp = service.fingerprint
                assert added["text"] == (
                    f"Gateway {GATEWAY} at 127.0.0.1 port {service.port}\n"
                    f"Host key fingerprint: {fp} (first use: pinned)\n"
                    "The manager's key was installed with the one-time token.\n"
                    f"PVO listener: interface Incoming Mail (127.0.0.1) port {CPQ_PORT}")
                assert added["data"]["first_use"] and added["data"]["key_installed"]
                assert manager.wakes == 1
                again = await manager.cmd("gateway.add", name=GATEWAY, host="127.0.0.1",
                                          ssh_port=service.port)
                assert f"Host key fingerprint: {fp} (unchanged)\nPVO listener:" in again["text"]
                assert await manager.cmd("gateway.test", name=GATEWAY) == {
                    "text": f"Gateway {GATEWAY}: PVO listener at 127.0.0.1 port {CPQ_PORT}."}
                assert (await manager.cmd("gateway.list"))["data"] == {"gateways": [
                    {"name": GATEWAY, "cpq_address": "127.0.0.1", "cpq_port": CPQ_PORT,
                     "ssh": f"127.0.0.1:{service.port}", "fingerprint": fp,
                     "looked_up": f"127.0.0.1:{CPQ_PORT}", "fault": None}]}
                assert any(f"SSH gateway {GATEWAY} added at 127.0.0.1 port {service.port}, "
                           f"host key {fp} (first use: pinned)" in x for x in manager.lines())
                assert await manager.cmd("gateway.remove", name=GATEWAY) == {
                    "text": f"Gateway {GATEWAY}: SSH pin removed; releases use the "
                            "configured address."}
                assert (await manager.cmd("gateway.list"))["data"]["gateways"][0]["ssh"] is None
            finally:
                await manager.locator.stop()
                await service.stop()
        run(body)
