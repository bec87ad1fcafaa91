"""The admin socket protocol: one JSON object per line, each way.

Request:  `{"command": "quarantine.release", "args": {"mid": 12}}`
Response: `{"ok": true, "text": "...", "data": {...}}` or
          `{"ok": false, "error": "No message with MID 12 ...", "exit": 1}`.

The socket is `<data>/admin.sock`, mode 0600: whoever can read the
appliance's data directory may operate it, nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pvoq.errors import OperatorError, TemporaryFailure

Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_LINE = 1 << 20


class CommandError(OperatorError):
    """An operator command failed in a way the operator can act on (exit 1)."""


class AdminServer:
    def __init__(self, path: Path, *, before_reply: Callable[[], None] | None = None) -> None:
        self.path = Path(path)
        self.commands: dict[str, Command] = {}
        self._server: asyncio.AbstractServer | None = None
        # e.g. flushing mail_logs: whoever ran a command finds its log lines written
        self._before_reply = before_reply

    def register(self, name: str, command: Command) -> None:
        if name in self.commands:
            raise ValueError(f"admin command {name!r} registered twice")
        self.commands[name] = command

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path),
                                                           limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await self._dispatch(line)
                if self._before_reply is not None:
                    self._before_reply()
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            name, args = request["command"], request.get("args") or {}
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "malformed request", "exit": 2}
        command = self.commands.get(name)
        if command is None:
            return {"ok": False, "error": f"Unknown command: {name}", "exit": 2}
        try:
            result = await command(args)
        except OperatorError as exc:  # the operator's to act on: its text, as it is
            return {"ok": False, "error": str(exc), "exit": exc.exit_code}
        except Exception as exc:
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}",
                    "exit": 1}
        return {"ok": True, **result}


class AdminUnavailable(TemporaryFailure):
    """No appliance answers on the admin socket."""


def call(path: Path, command: str, args: dict[str, Any] | None = None, *,
         timeout_s: float = 60.0) -> dict[str, Any]:
    """Send one command to the appliance listening on *path* and return its response."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise AdminUnavailable(f"no running appliance answers on {path} ({exc.strerror})") from None
    with sock, sock.makefile("rwb") as f:
        f.write(json.dumps({"command": command, "args": args or {}}).encode() + b"\n")
        f.flush()
        line = f.readline(MAX_LINE)
    if not line:
        raise AdminUnavailable(f"the appliance on {path} closed the connection")
    return json.loads(line)
