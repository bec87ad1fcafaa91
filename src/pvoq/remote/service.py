"""The gateway's SSH command service.

Owns the asyncssh server a gateway runs on `<ssh><interface_name>` and
`<ssh><port>`: public-key authentication only (no passwords, no keyboard-
interactive, no shell, no pty, no forwarding), and an exec request may run
only a command of `COMMANDS` (or of `ARG_COMMANDS`, with its arguments),
each a read-only operator command answered in JSON, but for `pvo migrate`,
by which the manager's migration wizard hands this gateway its plan, and
`pvo migrate cancel`, by which it stops that plan. One extra user, `enrol`,
may authenticate with any key but run only `enrol TOKEN NAME`: a valid
one-time token (issued by the gateway admin with `pvoq cli -c GATEWAY ssh
token`) installs that very key in `authorized_keys`.

It must never run anything but the listed commands, and never accept a key
that is not authorized for any user but `enrol`.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import asyncssh

from pvoq.maillog import MailLog
from pvoq.remote.keys import (
    AUTHORIZED_KEYS_FILE,
    HOST_KEY_FILE,
    TOKENS_FILE,
    AuthorizedKeys,
    EnrolTokens,
    fingerprint,
    load_or_create_key,
    ssh_dir,
)

ENROL_USER = "enrol"

# SSH command line -> admin command it runs. Read-only on purpose.
COMMANDS: Mapping[str, str] = {
    "pvo listener": "pvo.listener",
    "status": "status",
    "tophosts": "tophosts",
    "listeners": "listeners",
    "pvo local": "pvo.local",     # the migration wizard: mode, local quarantines, cluster
}
# SSH command words -> admin command that takes the words after them as `argv`.
ARG_COMMANDS: Mapping[str, str] = {
    "logs chunk": "logs.chunk",   # INODE OFFSET HEAD BYTES LINES: the manager's log subscription
    "pvo migrate": "pvo.migrate.start",  # PLAN (base64url JSON): the migration wizard's plan
    "pvo migrate cancel": "pvo.migrate.cancel",  # PLAN_ID: stop that plan's push
}

Command = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class CommandService:
    """An SSH server that answers the manager's questions about this gateway."""

    def __init__(self, *, data_dir: Path, hostname: str, host: str, port: int,
                 maillog: MailLog, commands: Mapping[str, Command]) -> None:
        directory = ssh_dir(data_dir)
        self.host_key = load_or_create_key(directory / HOST_KEY_FILE, comment=hostname)
        self.authorized = AuthorizedKeys(directory / AUTHORIZED_KEYS_FILE)
        self.tokens = EnrolTokens(directory / TOKENS_FILE)
        self.host, self.port = host, port
        self.log = maillog
        self.commands = commands
        self._keys: weakref.WeakKeyDictionary[Any, asyncssh.SSHKey] = \
            weakref.WeakKeyDictionary()
        self._server: asyncssh.SSHAcceptor | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.host_key)

    async def start(self) -> None:
        self._server = await asyncssh.create_server(
            lambda: _Server(self), self.host, self.port, server_host_keys=[self.host_key],
            process_factory=self._handle, allow_pty=False, agent_forwarding=False,
            x11_forwarding=False, line_editor=False, config=None, encoding="utf-8")
        self.log.info(f"SSH command service listening on {self.host} port {self.port} "
                      f"(host key {self.fingerprint})")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def authenticated(self, conn: Any, key: asyncssh.SSHKey) -> None:
        self._keys[conn] = key

    async def _handle(self, process: asyncssh.SSHServerProcess[str]) -> None:
        conn = process.get_extra_info("connection")
        user = str(process.get_extra_info("username"))
        peer = (conn.get_extra_info("peername") or ("?",))[0]
        command = " ".join((process.command or "").split())
        key = self._keys.get(conn)
        try:
            if user == ENROL_USER:
                code, out = self._enrol(command, key, peer)
            else:
                code, out = await self._run(command)
        except Exception as exc:  # an answer, not a dropped session
            code, out = 1, f"internal error: {type(exc).__name__}: {exc}"
        shown = _redact(command)
        self.log.info(f"SSH command {shown!r} from {peer} user {user}: exit {code}")
        (process.stdout if code == 0 else process.stderr).write(out + "\n")
        process.exit(code)

    async def _run(self, command: str) -> tuple[int, str]:
        name, args = COMMANDS.get(command), {}
        words = command.split()
        for n in (3, 2):  # the longest command words first: `pvo migrate cancel ID`
            if name is None and " ".join(words[:n]) in ARG_COMMANDS:
                name, args = ARG_COMMANDS[" ".join(words[:n])], {"argv": words[n:]}
        if name is None or name not in self.commands:
            return 1, f"command not allowed: {command!r} (allowed: {', '.join(COMMANDS)})"
        result = await self.commands[name](args)
        return 0, json.dumps(result.get("data", result.get("text")))

    def _enrol(self, command: str, key: asyncssh.SSHKey | None, peer: str) -> tuple[int, str]:
        words = command.split()
        if len(words) != 3 or words[0] != "enrol" or key is None:
            return 1, "the enrol user may only run: enrol TOKEN NAME"
        if not self.tokens.consume(words[1]):
            self.log.warning(f"SSH enrolment from {peer} refused: invalid or expired token")
            return 1, "invalid or expired enrolment token"
        added = self.authorized.add(key, words[2])
        self.log.info(f"SSH key {fingerprint(key)} of {words[2]} ({peer}) "
                      f"{'installed' if added else 'already installed'} with a one-time token")
        return 0, json.dumps({"installed": fingerprint(key)})


class _Server(asyncssh.SSHServer):
    def __init__(self, service: CommandService) -> None:
        self.service = service
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        ok = username == ENROL_USER or self.service.authorized.find(key) is not None
        if ok:
            self.service.authenticated(self.conn, key)
        else:
            peer = "?" if self.conn is None else (self.conn.get_extra_info("peername")
                                                  or ("?",))[0]
            self.service.log.warning(f"SSH authentication failed from {peer} user {username}: "
                                     f"key {fingerprint(key)} is not authorized")
        return ok


def _redact(command: str) -> str:
    """The command as the log may show it: an enrolment token never reaches mail_logs."""
    words = command.split()
    if len(words) >= 2 and words[0] == "enrol":
        words[1] = "<token>"
    return " ".join(words)
