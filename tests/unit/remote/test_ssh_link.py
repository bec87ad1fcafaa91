"""The gateway's SSH command service and the manager's client, in one process over 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from pvoq.maillog import MailLog
from pvoq.remote.client import SshClient
from pvoq.remote.keys import SshFault
from pvoq.remote.service import CommandService
from pvoq.testing.localdeploy import free_port

LISTENER = {"interface": "Incoming Mail", "address": "127.0.0.1", "port": 7026}


async def _pvo_listener(args: dict[str, Any]) -> dict[str, Any]:
    return {"data": LISTENER}


async def _status(args: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"system_status": "Online"}}


class Link:
    """A gateway service and a manager client sharing a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.log = MailLog(root / "gw" / "logs", appliance="gateway gw1", serial="S-1")
        self.service: CommandService | None = None
        self.client = SshClient(root / "mgr", hostname="manager.example.test", timeout_s=10)

    async def start(self) -> CommandService:
        self.service = CommandService(
            data_dir=self.root / "gw", hostname="gw1.example.test", host="127.0.0.1",
            port=self.port, maillog=self.log,
            commands={"pvo.listener": _pvo_listener, "status": _status})
        await self.service.start()
        return self.service

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.service = None

    def token(self) -> str:
        assert self.service is not None
        return self.service.tokens.issue(60)

    async def add(self, **kwargs: Any) -> dict[str, Any]:
        return await self.client.add("gw1.example.test", "127.0.0.1", self.port, **kwargs)


def run(tmp_path: Path, body: Callable[[Link], Awaitable[None]]) -> None:
    async def main() -> None:
        link = Link(tmp_path)
        await link.start()
        try:
            await body(link)
        finally:
            await link.stop()
    asyncio.run(main())


class TestEnrolment:
    def test_token_installs_the_key_and_pins_the_host_key(self, tmp_path: Path) -> None:
        """`add` with a token pins the offered host key and can ask the listener."""
        async def body(link: Link) -> None:
            result = await link.add(token=link.token())
            assert link.service is not None
            assert result["fingerprint"] == link.service.fingerprint
            assert result["first_use"] and result["key_installed"]
            assert result["listener"] == LISTENER
            answer = await link.client.listener("gw1.example.test")
            assert (answer.address, answer.port) == ("127.0.0.1", 7026)
        run(tmp_path, body)

    def test_a_token_cannot_be_used_twice(self, tmp_path: Path) -> None:
        """A second manager with the same token is refused and its key not installed."""
        async def body(link: Link) -> None:
            token = link.token()
            await link.add(token=token)
            other = SshClient(tmp_path / "mgr2", hostname="rogue.example.test", timeout_s=10)
            with pytest.raises(SshFault, match="invalid or expired enrolment token"):
                await other.add("gw1.example.test", "127.0.0.1", link.port, token=token)
            with pytest.raises(SshFault, match="authentication failed"):
                await other.add("gw1.example.test", "127.0.0.1", link.port)
        run(tmp_path, body)

    def test_without_token_or_installed_key_authentication_fails(self, tmp_path: Path) -> None:
        """A manager whose key is not authorized gets an authentication failure."""
        async def body(link: Link) -> None:
            with pytest.raises(SshFault, match="authentication failed: the manager's key is "
                                               "not authorized"):
                await link.add()
            assert link.client.pins.get("gw1.example.test") is None
        run(tmp_path, body)

    def test_an_unexpected_fingerprint_is_refused_before_enrolment(self, tmp_path: Path) -> None:
        """`--fingerprint` that does not match stops before the token is spent."""
        async def body(link: Link) -> None:
            token = link.token()
            with pytest.raises(SshFault, match="host key mismatch \\(expected SHA256:nope"):
                await link.add(token=token, expect_fingerprint="SHA256:nope")
            assert (await link.add(token=token))["key_installed"]
        run(tmp_path, body)


class TestRestrictions:
    def test_only_listed_commands_run(self, tmp_path: Path) -> None:
        """A command outside the list is refused with exit 1 and named in the fault."""
        async def body(link: Link) -> None:
            await link.add(token=link.token())
            assert "Online" in await link.client.run("gw1.example.test", "status")
            with pytest.raises(SshFault, match="command 'cat /etc/passwd' failed \\(exit 1\\): "
                                               "command not allowed"):
                await link.client.run("gw1.example.test", "cat /etc/passwd")
        run(tmp_path, body)

    def test_password_authentication_is_not_offered(self, tmp_path: Path) -> None:
        """A client with only a password cannot log in."""
        async def body(link: Link) -> None:
            with pytest.raises(asyncssh.PermissionDenied):
                await asyncssh.connect("127.0.0.1", link.port, username="admin",
                                       password="secret", known_hosts=None, client_keys=None,
                                       agent_path=None, config=None)
        run(tmp_path, body)

    def test_the_enrol_user_may_only_enrol(self, tmp_path: Path) -> None:
        """Any key may log in as `enrol`, but only to run `enrol TOKEN NAME`."""
        async def body(link: Link) -> None:
            key = asyncssh.generate_private_key("ssh-ed25519")
            async with asyncssh.connect("127.0.0.1", link.port, username="enrol",
                                        known_hosts=None, client_keys=[key], agent_path=None,
                                        config=None) as conn:
                result = await conn.run("status", check=False)
            assert result.exit_status == 1
            assert "may only run: enrol TOKEN NAME" in str(result.stderr)
        run(tmp_path, body)


class TestFaults:
    def test_changed_host_key_is_a_mismatch(self, tmp_path: Path) -> None:
        """After the gateway's host key changes, the pinned client refuses to talk to it."""
        async def body(link: Link) -> None:
            pinned = (await link.add(token=link.token()))["fingerprint"]
            await link.stop()
            (tmp_path / "gw" / "ssh" / "ssh_host_ed25519_key").unlink()
            offered = (await link.start()).fingerprint
            with pytest.raises(SshFault) as caught:
                await link.client.listener("gw1.example.test")
            assert str(caught.value) == (f"host key mismatch (pinned {pinned}, "
                                         f"offered {offered})")
        run(tmp_path, body)

    def test_nothing_listening_is_connection_refused(self, tmp_path: Path) -> None:
        """A stopped service gives `connection refused`."""
        async def body(link: Link) -> None:
            await link.add(token=link.token())
            await link.stop()
            with pytest.raises(SshFault, match="^connection refused$"):
                await link.client.listener("gw1.example.test")
        run(tmp_path, body)

    def test_a_gateway_never_added_is_a_fault(self, tmp_path: Path) -> None:
        """Asking a gateway without a pin fails with the reason."""
        async def body(link: Link) -> None:
            with pytest.raises(SshFault, match="has not been added"):
                await link.client.listener("gw9.example.test")
        run(tmp_path, body)
