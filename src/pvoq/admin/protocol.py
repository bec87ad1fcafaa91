"""The admin socket protocol: one JSON object per line, each way.

Request:  `{"command": "quarantine.release", "args": {"mid": 12}}`
Response: `{"ok": true, "text": "...", "data": {...}}` or
          `{"ok": false, "error": "No message with MID 12 ...", "exit": 1}`.

The socket is `<data>/admin.sock`, mode 0600: whoever can read the
appliance's data directory may operate it, nobody else.

Who is connected is the kernel's word, not the client's: when a connection
is accepted the server reads its peer credentials (`SO_PEERCRED`: pid, uid,
gid) into a `Peer`, resolves the uid to a user name, and hands that `Peer`
to every command registered with `peer=True` (`@command(name, peer=True)`)
beside its arguments. Nothing in a request can change it; a client that
still sends a `user` argument is not refused, and not believed.

The appliance maps that `Peer` to one of its users (`identify`, which may
refuse the connection) and checks each command against the user's role
(`authorize`) before running it; `execute` is the same path in-process, for
the web console acting as its logged-in user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvoq.errors import OperatorError, TemporaryFailure

Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_LINE = 1 << 20
_UCRED = struct.Struct("3i")   # struct ucred: pid, uid, gid


class CommandError(OperatorError):
    """An operator command failed in a way the operator can act on (exit 1)."""


@dataclass(frozen=True)
class Peer:
    """The process at the other end of an admin socket connection, as the kernel saw it
    connect (`SO_PEERCRED`); `user` is its uid's name, or `uid:N` without a passwd entry."""

    pid: int
    uid: int
    gid: int
    user: str
    role: str = "admin"                        # the pvoq role it acts with (`identify`)
    quarantines: tuple[str, ...] | None = None  # a custom role's granted quarantines
    account: str | None = None                 # the pvoq user it maps to, if any
    via: str | None = None                     # another origin (e.g. "web 192.0.2.1")

    @property
    def actor(self) -> str:
        """Who acts, as the audit trail records it: the pvoq user it maps to, else the
        Unix user name."""
        return self.account or self.user

    @property
    def origin(self) -> str:
        """From where, as the audit trail records it: the socket, the uid and the pid."""
        return self.via or f"admin-socket (uid {self.uid}, pid {self.pid})"


def user_name(uid: int) -> str:
    """The name of *uid* in the passwd database, or `uid:N` when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def peer_of(sock: Any) -> Peer | None:
    """The credentials of the process connected on the Unix socket *sock* (None where the
    system cannot tell: no `SO_PEERCRED`)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        pid, uid, gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _UCRED.size))
    except OSError:
        return None
    return Peer(pid, uid, gid, user_name(uid))


class AdminServer:
    def __init__(self, path: Path, *, before_reply: Callable[[], None] | None = None) -> None:
        self.path = Path(path)
        self.commands: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {}
        self._with_peer: set[str] = set()   # commands called with the connection's `Peer`
        self._server: asyncio.AbstractServer | None = None
        # e.g. flushing mail_logs: whoever ran a command finds its log lines written
        self._before_reply = before_reply
        # The appliance's users: the connected process as a user (raises an
        # OperatorError to refuse it), and whether that user may run a command.
        self.identify: Callable[[Peer], Peer] | None = None
        self.authorize: Callable[[str, Peer], None] | None = None

    def register(self, name: str, command: Callable[..., Awaitable[dict[str, Any]]], *,
                 peer: bool = False) -> None:
        """Answer *name* with *command*: `command(args)`, or `command(args, peer)` when
        *peer* (the connected process's credentials, which no request can change)."""
        if name in self.commands:
            raise ValueError(f"admin command {name!r} registered twice")
        self.commands[name] = command
        if peer:
            self._with_peer.add(name)

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
        peer = peer_of(writer.get_extra_info("socket"))
        refused: str | None = None
        if peer is not None and self.identify is not None:
            try:
                peer = self.identify(peer)
            except OperatorError as exc:
                refused = str(exc)
        try:
            while line := await reader.readline():
                reply = ({"ok": False, "error": refused, "exit": 1} if refused is not None
                         else await self._dispatch(line, peer))
                if self._before_reply is not None:
                    self._before_reply()
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _dispatch(self, line: bytes, peer: Peer | None) -> dict[str, Any]:
        try:
            request = json.loads(line)
            name, args = request["command"], request.get("args") or {}
            if not isinstance(args, dict):
                raise TypeError("args is not an object")
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "malformed request", "exit": 2}
        if name not in self.commands:
            return {"ok": False, "error": f"Unknown command: {name}", "exit": 2}
        if name in self._with_peer and peer is None:
            return {"ok": False, "error": f"{name}: the admin socket cannot tell which user "
                    "is connected (no SO_PEERCRED on this system)", "exit": 1}
        try:
            result = await self.execute(name, args, peer)
        except OperatorError as exc:  # the operator's to act on: its text, as it is
            return {"ok": False, "error": str(exc), "exit": exc.exit_code}
        except Exception as exc:
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}",
                    "exit": 1}
        return {"ok": True, **result}


    async def execute(self, name: str, args: dict[str, Any], peer: Peer | None) -> dict[str, Any]:
        """Run command *name* as *peer* (checked by `authorize`); its result, or the
        command's `OperatorError` (an unknown command: `CommandError`)."""
        command = self.commands.get(name)
        if command is None:
            raise CommandError(f"Unknown command: {name}")
        if peer is not None and self.authorize is not None:
            self.authorize(name, peer)
        if name in self._with_peer:
            if peer is None:
                raise CommandError(f"{name}: cannot tell which user runs it")
            return await command(args, peer)
        return await command(args)


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
