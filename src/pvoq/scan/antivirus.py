"""Anti-virus: the pipeline's anti-virus check, and its engines (clamd, a built-in EICAR check).

Owns the clamd wire protocol (`zINSTREAM\\0`, chunks each prefixed with a
4-byte big-endian length, a zero-length chunk, one NUL-terminated reply) over
a Unix or TCP socket, and the mapping of its replies to AsyncOS verdicts:
CLEAN, VIRAL (with the signature names), ENCRYPTED, UNSCANNABLE. Any failure
to get an answer (clamd down, slow, or answering an error) raises
`ScannerUnavailable`, a `ScanError`: the message is kept and retried, never
passed. ENCRYPTED needs clamd's `AlertEncrypted yes` (without it an encrypted
archive scans as clean, as clamd cannot look inside). The built-in engine
knows only the EICAR test string; it is the
fallback when no clamd is configured (so a demo runs without clamd).

`AntivirusCheck` is the pipeline's `antivirus` stage (a `scan.check.Check`):
it asks its engine and maps the engine's `AvVerdict` to a `CheckResult`:
VIRAL to the Virus quarantine, ENCRYPTED and UNSCANNABLE to the configured
unscannable action.

This module never decides where mail goes and never logs.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import compat32
from enum import StrEnum
from typing import Any, Final, Protocol

from pvoq.config.filterlang import BuiltinQuarantine
from pvoq.scan.check import Pvo, Stage, row
from pvoq.scan.message import WALK_ABOVE, ScanMessage, Unscannable
from pvoq.scan.mimewalk import NotWalkable, leaves
from pvoq.scan.verdict import (
    BOUNCE,
    DROP,
    CheckAction,
    CheckResult,
    ScanError,
    Verdict,
)


class AvVerdict(StrEnum):
    """What an anti-virus engine found (AsyncOS's anti-virus verdicts, as it spells them)."""

    CLEAN = "CLEAN"
    VIRAL = "VIRAL"              # a virus: the signature names say which
    ENCRYPTED = "ENCRYPTED"      # an encrypted archive or document, not looked into
    UNSCANNABLE = "UNSCANNABLE"  # beyond the engine's limits


CLEAN: Final = AvVerdict.CLEAN
VIRAL: Final = AvVerdict.VIRAL
ENCRYPTED: Final = AvVerdict.ENCRYPTED
UNSCANNABLE: Final = AvVerdict.UNSCANNABLE

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_NAME = "Eicar-Test-Signature"
CHUNK_BYTES = 64 * 1024
_MAX_REPLY = 64 * 1024


class ScannerUnavailable(ScanError):
    """The engine gave no verdict (down, too slow, or answering an error)."""


@dataclass(frozen=True)
class AvResult:
    verdict: str                 # an AvVerdict
    names: tuple[str, ...] = ()  # signature names, for VIRAL (and heuristic ENCRYPTED)
    detail: str = ""


class AvEngine(Protocol):
    name: str

    def scan(self, data: bytes) -> AvResult: ...

    def describe(self) -> str: ...


def parse_reply(reply: str) -> AvResult:
    """Map one clamd INSTREAM reply (without its NUL) to a verdict.

    `stream: OK` is clean; `stream: NAME FOUND` is viral, except clamd's
    heuristic names for encrypted archives/documents (ENCRYPTED) and for
    limits it could not scan within (UNSCANNABLE); a size-limit `ERROR` is
    UNSCANNABLE; any other error raises ScannerUnavailable.
    """
    text = reply.strip()
    body = text.split(": ", 1)[1] if text.startswith("stream: ") else text
    if body == "OK":
        return AvResult(CLEAN)
    if body.endswith(" FOUND"):
        names = tuple(n for n in body[:-len(" FOUND")].split(", ") if n)
        if names and all(n.startswith("Heuristics.Encrypted") for n in names):
            return AvResult(ENCRYPTED, names, body)
        if names and all(n.startswith("Heuristics.Limits") for n in names):
            return AvResult(UNSCANNABLE, names, body)
        return AvResult(VIRAL, names, body)
    if body.endswith("ERROR") and "size limit exceeded" in body.lower():
        return AvResult(UNSCANNABLE, (), body)
    raise ScannerUnavailable(f"clamd answered: {text!r}")


class ClamdEngine:
    """clamd reached over a Unix socket (*socket_path*) or TCP (*host*, *port*)."""

    name = "clamd"

    def __init__(self, *, socket_path: str | None = None, host: str | None = None,
                 port: int = 3310, timeout_s: float = 30.0) -> None:
        if not socket_path and not host:
            raise ValueError("clamd needs a socket path or a host")
        self.socket_path = socket_path
        self.host = host
        self.port = port
        self.timeout_s = timeout_s

    def describe(self) -> str:
        where = f"unix:{self.socket_path}" if self.socket_path else f"tcp:{self.host}:{self.port}"
        return f"clamd {where}"

    def _connect(self) -> socket.socket:
        if self.socket_path:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = self.socket_path
        else:
            assert self.host is not None
            sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                                 socket.SOCK_STREAM)
            address = (self.host, self.port)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def _command(self, sock: socket.socket, command: bytes, data: bytes | None) -> str:
        sock.sendall(b"z" + command + b"\0")
        try:
            if data is not None:
                view = memoryview(data)
                for offset in range(0, len(view), CHUNK_BYTES):
                    chunk = view[offset:offset + CHUNK_BYTES]
                    sock.sendall(struct.pack(">I", len(chunk)) + chunk)
                sock.sendall(struct.pack(">I", 0))
        except (BrokenPipeError, ConnectionResetError):
            pass  # clamd stops reading at a size limit; its reply says why
        reply = bytearray()
        while not reply.endswith(b"\0"):
            piece = sock.recv(4096)
            if not piece:
                break
            reply += piece
            if len(reply) > _MAX_REPLY:
                raise ScannerUnavailable("clamd reply too long")
        if not reply:
            raise ScannerUnavailable("clamd closed the connection without a reply")
        return reply.rstrip(b"\0").decode("utf-8", "replace")

    def _call(self, command: bytes, data: bytes | None = None) -> str:
        try:
            with self._connect() as sock:
                return self._command(sock, command, data)
        except TimeoutError as exc:
            raise ScannerUnavailable(f"{self.describe()} timed out after "
                                     f"{self.timeout_s:g}s") from exc
        except OSError as exc:
            raise ScannerUnavailable(f"{self.describe()} unavailable: "
                                     f"{exc.strerror or exc}") from exc

    def scan(self, data: bytes) -> AvResult:
        return parse_reply(self._call(b"INSTREAM", data))

    def ping(self) -> bool:
        try:
            return self._call(b"PING") == "PONG"
        except ScannerUnavailable:
            return False

    def version(self) -> str:
        return self._call(b"VERSION")


class EicarEngine:
    """The built-in fallback: the EICAR test string, in the raw message or a decoded part."""

    name = "builtin"

    def describe(self) -> str:
        return "built-in EICAR test signature (no clamd configured)"

    def scan(self, data: bytes) -> AvResult:
        if EICAR in data:
            return AvResult(VIRAL, (EICAR_NAME,))
        if len(data) > WALK_ABOVE:
            with contextlib.suppress(NotWalkable):  # then parsed whole, below
                if any(EICAR in leaf.decode(data) for leaf in leaves(data)):
                    return AvResult(VIRAL, (EICAR_NAME,))
                return AvResult(CLEAN)
        try:
            parts = list(message_from_bytes(data, policy=compat32).walk())
        except RecursionError:
            raise Unscannable("the MIME parser ran out of stack (nesting too deep)") from None
        for part in parts:
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and EICAR in payload:
                return AvResult(VIRAL, (EICAR_NAME,))
        return AvResult(CLEAN)


class AntivirusCheck:
    """The `antivirus` stage: the engine's verdict as a check (quarantine `Virus`).

    *unscannable_action* (`deliver`, `quarantine`, `drop`, `bounce`) is what
    becomes of an ENCRYPTED or UNSCANNABLE message. Disabled, the check passes
    everything and says so in its misses.
    """

    name: str = Stage.ANTIVIRUS
    title = "Anti-virus"
    pvo: str = Pvo.VIRUS
    quarantine = BuiltinQuarantine.VIRUS

    def __init__(self, engine: AvEngine, *, unscannable_action: str, timeout_s: float,
                 enabled: bool = True) -> None:
        self.engine = engine
        self.unscannable_action = unscannable_action
        self.timeout_s = timeout_s
        self.enabled = enabled

    def describe(self) -> dict[str, Any]:
        engine = (f"{self.engine.describe()}; unscannable: {self.unscannable_action}"
                  if self.enabled else "disabled")
        return row(self, engine)

    def check(self, msg: ScanMessage) -> CheckResult:
        if not self.enabled:
            return CheckResult(misses=["a/v disabled"])
        found = self.engine.scan(msg.body)
        reason = f"a/v verdict:{found.verdict}"
        if found.verdict == CLEAN:
            return CheckResult(misses=[reason])
        if found.verdict == VIRAL:
            reason = f"{reason} {' '.join(found.names)}"
            return CheckResult(verdicts=[Verdict(self.name, self.quarantine, reason,
                                                 f"{self.engine.describe()}")], hits=[reason])
        return self.unscannable(found.verdict, found.detail or found.verdict.lower())

    def unscannable(self, verdict: str = UNSCANNABLE, detail: str = "") -> CheckResult:
        """The configured unscannable action for a message the engine (ENCRYPTED,
        UNSCANNABLE) or the pipeline (a message beyond the MIME limits, the
        parser failing, too many temporary failures) could not scan."""
        return unscannable_result(self.unscannable_action, verdict, detail or verdict.lower(),
                                  stage=self.name, quarantine=self.quarantine)


def unscannable_result(action: str, verdict: str = UNSCANNABLE, detail: str = "", *,
                       stage: str = Stage.ANTIVIRUS,
                       quarantine: str = BuiltinQuarantine.VIRUS) -> CheckResult:
    """*action* (`deliver`, `quarantine`, `drop`, `bounce`) for an unscannable message."""
    reason = f"a/v verdict:{verdict}"
    if action == "quarantine":
        return CheckResult(verdicts=[Verdict(stage, quarantine, reason, detail)],
                           hits=[reason])
    if action in (DROP, BOUNCE):
        return CheckResult(action=CheckAction(action), reason=reason, hits=[reason])
    return CheckResult(hits=[f"{reason} (delivered: unscannable_action deliver)"])
