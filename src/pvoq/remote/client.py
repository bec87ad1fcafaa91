"""The manager's SSH command client.

Owns the manager's client key (`<data_dir>/ssh/id_ed25519`), the pins of the
gateways it reaches (`known_gateways.json`), adding a gateway (trust on first
use of its host key, then installing the manager's key with a one-time token
unless the gateway admin installed it from the key file), and running one of
the gateway's commands. Every failure becomes one `SshFault` whose text names
the cause: connection refused, host key mismatch, authentication failure,
timeout, or the command's error.

It never falls back to an unpinned host key once a gateway is pinned, and it
reads no OpenSSH client configuration, agent or default key of the user.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from pvoq.remote.keys import (
    CLIENT_KEY_FILE,
    PINS_FILE,
    Pin,
    PinnedGateways,
    SshFault,
    fingerprint,
    load_or_create_key,
    public_line,
    ssh_dir,
)
from pvoq.remote.service import ENROL_USER


@dataclass(frozen=True)
class ListenerAnswer:
    """Where a gateway says its PVO listener is."""

    interface: str
    address: str
    port: int


def parse_listener_answer(text: str) -> ListenerAnswer:
    """The JSON a gateway prints for `pvo listener`; `SshFault` if malformed."""
    try:
        data = json.loads(text)
        return ListenerAnswer(str(data["interface"]), str(data["address"]), int(data["port"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise SshFault(f"malformed answer to 'pvo listener': {text.strip()[:200]!r} "
                       f"({type(exc).__name__})") from None


class _Client(asyncssh.SSHClient):
    def __init__(self, pinned: asyncssh.SSHKey | None) -> None:
        self.pinned = pinned
        self.offered: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        self.offered = key
        return self.pinned is None or public_line(key) == public_line(self.pinned)


class SshClient:
    """The manager's end of the SSH link to its gateways."""

    def __init__(self, data_dir: Path, *, hostname: str, timeout_s: float = 10.0) -> None:
        directory = ssh_dir(data_dir)
        self.key = load_or_create_key(directory / CLIENT_KEY_FILE, comment=hostname)
        self.pins = PinnedGateways(directory / PINS_FILE)
        self.hostname = hostname
        self.timeout_s = timeout_s
        self.public_key_file = directory / (CLIENT_KEY_FILE + ".pub")

    async def _exec(self, host: str, port: int, pinned: asyncssh.SSHKey | None, user: str,
                    command: str) -> tuple[str, asyncssh.SSHKey | None]:
        client = _Client(pinned)
        try:
            async with asyncio.timeout(self.timeout_s):
                conn, _ = await asyncssh.create_connection(
                    lambda: client, host, port, username=user, known_hosts=([], [], []),
                    client_keys=[self.key], agent_path=None, config=None, password=None,
                    kbdint_auth=False, preferred_auth="publickey", encoding="utf-8")
                async with conn:
                    result = await conn.run(command, check=False)
        except asyncssh.HostKeyNotVerifiable:
            offered = fingerprint(client.offered) if client.offered is not None else "none"
            pinned_fp = fingerprint(pinned) if pinned is not None else "none"
            raise SshFault(f"host key mismatch (pinned {pinned_fp}, offered {offered})") from None
        except asyncssh.PermissionDenied:
            raise SshFault("authentication failed: the manager's key is not authorized "
                           "on the gateway") from None
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            raise self._link_fault(exc) from None
        if result.exit_status != 0:
            detail = str(result.stderr or result.stdout or "").strip()
            shown = "enrol <token> ..." if command.startswith("enrol ") else command
            raise SshFault(f"command {shown!r} failed (exit {result.exit_status}): {detail}")
        return str(result.stdout or ""), client.offered

    def _link_fault(self, exc: BaseException) -> SshFault:
        """What an operator reads when the SSH link itself failed."""
        if isinstance(exc, TimeoutError):
            return SshFault(f"timed out after {self.timeout_s:g}s")
        if isinstance(exc, ConnectionRefusedError):
            return SshFault("connection refused")
        if isinstance(exc, OSError):
            return SshFault(f"connection failed: {exc.strerror or exc}")
        assert isinstance(exc, asyncssh.Error)
        return SshFault(f"SSH error: {exc.reason}")

    async def run(self, name: str, command: str) -> str:
        """Run *command* on the pinned gateway *name*; its standard output."""
        pin = self.pins.get(name)
        if pin is None:
            raise SshFault(f"gateway {name} has not been added (pvoq cli gateway add)")
        out, _ = await self._exec(pin.host, pin.port, pin.key(), self.hostname, command)
        return out

    async def listener(self, name: str) -> ListenerAnswer:
        return parse_listener_answer(await self.run(name, "pvo listener"))

    async def add(self, name: str, host: str, port: int, *, token: str | None = None,
                  replace: bool = False, expect_fingerprint: str | None = None
                  ) -> dict[str, Any]:
        """Pin *name*'s host key (first use), install our key, check the link works."""
        old = self.pins.get(name)
        probe = _Client(None)
        try:
            async with asyncio.timeout(self.timeout_s):
                conn, _ = await asyncssh.create_connection(
                    lambda: probe, host, port, username=self.hostname,
                    known_hosts=([], [], []), client_keys=[self.key], agent_path=None,
                    config=None, password=None, kbdint_auth=False,
                    preferred_auth="publickey")
                conn.close()
        except asyncssh.PermissionDenied:
            pass  # the host key is known by now; authorization comes below
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            raise self._link_fault(exc) from None
        if probe.offered is None:
            raise SshFault("the gateway offered no host key")
        offered = probe.offered
        fp = fingerprint(offered)
        if expect_fingerprint and expect_fingerprint != fp:
            raise SshFault(f"host key mismatch (expected {expect_fingerprint}, offered {fp})")
        if old is not None and old.fingerprint != fp and not replace:
            raise SshFault(f"host key mismatch (pinned {old.fingerprint}, offered {fp}); "
                           "verify the new key with the gateway admin and add it with --replace")
        installed = False
        if token:
            await self._exec(host, port, offered, ENROL_USER, f"enrol {token} {self.hostname}")
            installed = True
        answer = parse_listener_answer(
            (await self._exec(host, port, offered, self.hostname, "pvo listener"))[0])
        self.pins.put(Pin(name=name, host=host, port=port, host_key=public_line(offered),
                          fingerprint=fp, added_at=time.time()))
        return {"name": name, "host": host, "port": port, "fingerprint": fp,
                "first_use": old is None, "replaced": old is not None and old.fingerprint != fp,
                "key_installed": installed,
                "listener": {"interface": answer.interface, "address": answer.address,
                             "port": answer.port}}
