"""Tests for the admin socket's peer credentials (`admin.protocol.Peer`): who is connected is
what the kernel says (`SO_PEERCRED`), never what the client sends.

A real `AdminServer` on a temporary Unix socket; clients are `call()` in a worker thread
of this process, or a separate process run as another user.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvoq.admin.protocol import AdminServer, Peer, call, user_name
from pvoq.admin.registry import CommandSet, command

NOBODY = 65534


@pytest.fixture
def sock_path() -> Iterator[Path]:
    """A socket path short enough for AF_UNIX (tmp_path may be too long)."""
    directory = Path(tempfile.mkdtemp(prefix="pvoq-peer-"))
    yield directory / "admin.sock"
    shutil.rmtree(directory, ignore_errors=True)


class WhoCommands(CommandSet):
    """`whoami` sees the peer; `echo` sees only its arguments."""

    @command("whoami", peer=True)
    async def whoami(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return {"data": {"pid": peer.pid, "uid": peer.uid, "gid": peer.gid,
                         "user": peer.user, "actor": peer.actor, "origin": peer.origin,
                         "args": args}}

    @command("echo")
    async def echo(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"data": args}


def serve(sock_path: Path, scenario: Any) -> Any:
    server = AdminServer(sock_path)
    WhoCommands().register(server)

    async def main() -> Any:
        await server.start()
        try:
            return await scenario()
        finally:
            await server.stop()
    return asyncio.run(main())


def test_the_peer_is_this_process_whatever_the_request_says(
        sock_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that names another user (`user`, `LOGNAME`, a forged peer) is named by its
    uid all the same; the extra arguments are passed on, not refused."""
    monkeypatch.setenv("LOGNAME", "mallory")
    monkeypatch.setenv("USER", "mallory")
    forged = {"user": "mallory", "peer": {"uid": 0, "user": "root"}, "_actor": "root"}

    async def scenario() -> dict[str, Any]:
        return await asyncio.to_thread(call, sock_path, "whoami", forged)

    reply = serve(sock_path, scenario)
    me = pwd.getpwuid(os.getuid()).pw_name
    assert reply["ok"] is True
    assert reply["data"] == {
        "pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid(), "user": me, "actor": me,
        "origin": f"admin-socket (uid {os.getuid()}, pid {os.getpid()})", "args": forged}


def test_commands_without_peer_see_their_arguments_only(sock_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        return await asyncio.to_thread(call, sock_path, "echo", {"mid": 3})

    assert serve(sock_path, scenario) == {"ok": True, "data": {"mid": 3}}


def test_arguments_that_are_not_an_object_are_malformed(sock_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(str(sock_path))
        writer.write(b'{"command": "whoami", "args": ["user", "root"]}\n')
        await writer.drain()
        reply = json.loads(await reader.readline())
        writer.close()
        await writer.wait_closed()
        return reply  # type: ignore[no-any-return]

    assert serve(sock_path, scenario) == {"ok": False, "error": "malformed request", "exit": 2}


CLIENT = """
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(json.dumps({"command": "whoami", "args": {"user": os.environ["LOGNAME"]}}).encode()
          + b"\\n")
print(s.makefile("rb").readline().decode().strip())
"""


def test_a_client_is_named_by_its_own_uid_not_its_claim(sock_path: Path) -> None:
    """A client process that claims to be root is recorded by the uid the kernel gives.

    Run as root (as CI is), the client runs as `nobody`; otherwise as this user,
    whose claim of `root` is just as false.
    """
    os.chmod(sock_path.parent, 0o755)
    as_root = os.geteuid() == 0
    uid = NOBODY if as_root else os.getuid()
    gid = NOBODY if as_root else os.getgid()
    if not as_root:
        assert pwd.getpwuid(uid).pw_name != "root"

    async def scenario() -> tuple[int, dict[str, Any]]:
        os.chmod(sock_path, 0o666)   # let the other user connect, for this test only
        as_user: dict[str, Any] = {"user": NOBODY, "group": NOBODY} if as_root else {}
        proc = await asyncio.create_subprocess_exec(
            sys.executable if not as_root else "/usr/bin/python3", "-c", CLIENT,
            str(sock_path), env={"LOGNAME": "root", "USER": "root"}, cwd="/",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **as_user)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err
        return proc.pid, json.loads(out)

    pid, reply = serve(sock_path, scenario)
    data = reply["data"]
    assert (data["uid"], data["gid"], data["pid"]) == (uid, gid, pid)
    assert data["actor"] == pwd.getpwuid(uid).pw_name
    assert data["args"] == {"user": "root"}


def test_a_uid_without_a_passwd_entry_is_named_by_number() -> None:
    unknown = next(uid for uid in range(2**31 - 10, 2**31 - 1)
                   if not any(p.pw_uid == uid for p in pwd.getpwall()))
    assert user_name(unknown) == f"uid:{unknown}"
    assert user_name(0) == pwd.getpwuid(0).pw_name
