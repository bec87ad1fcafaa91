"""Tests for pvoq.admin.protocol: the admin socket, one JSON object per line each way.

A real `AdminServer` on a temporary Unix socket; requests are written on a
raw socket (to see the framing) or sent with `call()` from a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvoq.admin.protocol import AdminServer, AdminUnavailable, CommandError, call


@pytest.fixture
def sock_path() -> Iterator[Path]:
    """A socket path short enough for AF_UNIX (tmp_path may be too long)."""
    directory = Path(tempfile.mkdtemp(prefix="pvoq-admin-"))
    yield directory / "admin.sock"
    shutil.rmtree(directory, ignore_errors=True)


async def echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"text": "echo", "data": args}


async def refuse(args: dict[str, Any]) -> dict[str, Any]:
    raise CommandError(f"No message with MID {args['mid']} in the quarantines.")


async def crash(args: dict[str, Any]) -> dict[str, Any]:
    raise KeyError("mid")


def served(sock_path: Path, **kwargs: Any) -> AdminServer:
    server = AdminServer(sock_path, **kwargs)
    server.register("echo", echo)
    server.register("quarantine.release", refuse)
    server.register("crash", crash)
    return server


async def exchange(path: Path, *lines: bytes) -> list[Any]:
    """Write *lines* on one connection; read one reply line for each."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    replies = []
    try:
        for line in lines:
            writer.write(line)
            await writer.drain()
            replies.append(json.loads(await reader.readline()))
    finally:
        writer.close()
        await writer.wait_closed()
    return replies


def run_with(server: AdminServer, scenario: Any) -> Any:
    async def main() -> Any:
        await server.start()
        try:
            return await scenario()
        finally:
            await server.stop()
    return asyncio.run(main())


def test_request_response_framing(sock_path: Path) -> None:
    """One line per request, one per reply, several on one connection, in order."""
    server = served(sock_path)
    replies = run_with(server, lambda: exchange(
        sock_path,
        b'{"command": "echo", "args": {"mid": 12}}\n',
        b'{"command": "echo"}\n',
        json.dumps({"command": "echo", "args": {"text": "a\nb"}}).encode() + b"\n"))
    assert replies == [
        {"ok": True, "text": "echo", "data": {"mid": 12}},
        {"ok": True, "text": "echo", "data": {}},
        {"ok": True, "text": "echo", "data": {"text": "a\nb"}},
    ]


@pytest.mark.parametrize("line", [b"not json\n", b'{"args": {}}\n', b"[1, 2]\n",
                                  b'"echo"\n'])
def test_malformed_request_exits_2(sock_path: Path, line: bytes) -> None:
    server = served(sock_path)
    (reply,) = run_with(server, lambda: exchange(sock_path, line))
    assert reply == {"ok": False, "error": "malformed request", "exit": 2}


def test_connection_survives_a_malformed_request(sock_path: Path) -> None:
    server = served(sock_path)
    replies = run_with(server, lambda: exchange(sock_path, b"{\n", b'{"command": "echo"}\n'))
    assert [r["ok"] for r in replies] == [False, True]


def test_unknown_command_exits_2(sock_path: Path) -> None:
    server = served(sock_path)
    (reply,) = run_with(server, lambda: exchange(sock_path, b'{"command": "x"}\n'))
    assert reply == {"ok": False, "error": "Unknown command: x", "exit": 2}


def test_command_error_exits_1_with_its_text(sock_path: Path) -> None:
    server = served(sock_path)
    (reply,) = run_with(server, lambda: exchange(
        sock_path, b'{"command": "quarantine.release", "args": {"mid": 12}}\n'))
    assert reply == {"ok": False, "error": "No message with MID 12 in the quarantines.",
                     "exit": 1}


def test_unexpected_exception_is_an_internal_error(sock_path: Path) -> None:
    server = served(sock_path)
    (reply,) = run_with(server, lambda: exchange(sock_path, b'{"command": "crash"}\n'))
    assert reply == {"ok": False, "error": "internal error: KeyError: 'mid'", "exit": 1}


def test_before_reply_runs_before_each_reply(sock_path: Path) -> None:
    """The hook has run (e.g. the log flushed) by the time the client reads each reply."""
    events: list[str] = []
    server = served(sock_path, before_reply=lambda: events.append("flushed"))

    async def scenario() -> list[str]:
        reader, writer = await asyncio.open_unix_connection(str(sock_path))
        seen = []
        for line in (b'{"command": "echo"}\n', b'{"command": "x"}\n', b"junk\n"):
            writer.write(line)
            await writer.drain()
            await reader.readline()
            seen.append(len(events))
        writer.close()
        await writer.wait_closed()
        return seen

    assert run_with(server, scenario) == [1, 2, 3]


def test_socket_mode_0600_and_removed_on_stop(sock_path: Path) -> None:
    server = served(sock_path)

    async def scenario() -> int:
        return stat.S_IMODE(os.stat(sock_path).st_mode)

    assert run_with(server, scenario) == 0o600
    assert not sock_path.exists()


def test_start_replaces_a_stale_socket(sock_path: Path) -> None:
    """A socket file left by a crashed appliance does not stop the next one starting."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()
    server = served(sock_path)
    (reply,) = run_with(server, lambda: exchange(sock_path, b'{"command": "echo"}\n'))
    assert reply["ok"] is True


def test_register_a_name_twice_is_refused(sock_path: Path) -> None:
    server = AdminServer(sock_path)
    server.register("echo", echo)
    with pytest.raises(ValueError, match="'echo' registered twice"):
        server.register("echo", crash)
    assert server.commands == {"echo": echo}


def test_call_round_trip(sock_path: Path) -> None:
    server = served(sock_path)

    async def scenario() -> list[dict[str, Any]]:
        return [await asyncio.to_thread(call, sock_path, "echo", {"mid": 7}),
                await asyncio.to_thread(call, sock_path, "echo"),
                await asyncio.to_thread(call, sock_path, "quarantine.release", {"mid": 3})]

    assert run_with(server, scenario) == [
        {"ok": True, "text": "echo", "data": {"mid": 7}},
        {"ok": True, "text": "echo", "data": {}},
        {"ok": False, "error": "No message with MID 3 in the quarantines.", "exit": 1},
    ]


def test_call_missing_socket_is_unavailable(sock_path: Path) -> None:
    with pytest.raises(AdminUnavailable, match="no running appliance answers on .*admin.sock"):
        call(sock_path, "echo")


def test_call_socket_nobody_listens_on_is_unavailable(sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    try:
        with pytest.raises(AdminUnavailable, match="no running appliance answers"):
            call(sock_path, "echo")
    finally:
        stale.close()


def test_call_connection_closed_without_reply_is_unavailable(sock_path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)

    async def scenario() -> None:
        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.close()
        closer = asyncio.create_task(asyncio.to_thread(hang_up))
        with pytest.raises(AdminUnavailable, match="closed the connection"):
            await asyncio.to_thread(call, sock_path, "echo")
        await closer

    try:
        asyncio.run(scenario())
    finally:
        listener.close()
