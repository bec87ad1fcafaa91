"""The wire of one outgoing SMTP connection: replies read in order, writes, STARTTLS.

Owns the byte level under `smtp.client`: an asyncio `Protocol` that parses
every reply the server sends (multi-line ones joined) into a queue, in order,
whether or not a command waits for it, so that commands may be pipelined
(RFC 2920); writes with flow control (`drain`); the switch to TLS
(`start_tls`, the bytes the server sent after its 220 thrown away, RFC 3207
4.2); and the body of a DATA (`write_body`: dot-stuffed, line ends made CRLF,
a large body in pieces that each drain before the next).

Every wait is bounded by the connection's timeout. Nothing here logs or
decides: failures are the standard library's (`ConnectionError` when the
server closed or sent what is not a reply, `TimeoutError`, `ssl.SSLError`),
and once one happened the wire is closed and every later call raises it.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, cast

MAX_LINE = 8192            # bytes of one reply line, as aiosmtplib allowed
MAX_REPLY_LINES = 1000     # lines of one multi-line reply (an EHLO has about ten)
STREAM_ABOVE = 1024 * 1024  # a body larger than this is written in pieces
CHUNK = 256 * 1024


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def temporary(self) -> bool:
        return self.code // 100 == 4


class BodySource(Protocol):
    """A body read a piece at a time (the spool's `BodyFile`): `send` streams it."""

    size: int

    def read(self) -> bytes: ...

    def pieces(self, chunk: int = CHUNK) -> Iterator[bytes]: ...


class SmtpWire(asyncio.Protocol):
    """One client connection's bytes: `reply()` returns the server's replies in order."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._lines: list[bytes] = []          # of the multi-line reply being read
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    @classmethod
    async def connect(cls, host: str, port: int, *, timeout_s: float,
                      source_ip: str | None = None) -> SmtpWire:
        """A TCP connection to *host*:*port* (from *source_ip*), within *timeout_s*."""
        wire = cls(timeout_s)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout_s):
            await loop.create_connection(lambda: wire, host, port,
                                         local_addr=(source_ip, 0) if source_ip else None)
        return wire

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._failure is not None:
            return
        self._buffer += data
        try:
            self._parse()
        except ConnectionError as exc:
            self.close(exc)
            return
        if self._replies:
            self._wake()

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost says so

    def connection_lost(self, exc: Exception | None) -> None:
        if self._failure is None:
            lost = ConnectionResetError("the server closed the connection")
            lost.__cause__ = exc
            self._failure = lost
        self.transport = None
        self._wake()
        self._wake_drain()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain()

    # -- reading ------------------------------------------------------------------------
    def _parse(self) -> None:
        """Every complete reply in the buffer onto the queue."""
        buffer, start = self._buffer, 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                if len(buffer) - start > MAX_LINE:
                    raise ConnectionError("reply line too long from the server")
                break
            line = bytes(buffer[start:end + 1])
            start = end + 1
            if len(line) > MAX_LINE:
                raise ConnectionError("reply line too long from the server")
            if not line[:3].isdigit() or line[3:4] not in (b" ", b"-", b"\r", b"\n"):
                shown = line[:80].decode("ascii", "backslashreplace")
                raise ConnectionError(f"malformed reply from the server: {shown!r}")
            self._lines.append(line)
            if line[3:4] == b"-":
                if len(self._lines) > MAX_REPLY_LINES:
                    raise ConnectionError("reply too long from the server")
                continue
            text = b"\n".join(x[4:].strip(b" \t\r\n") for x in self._lines)
            self._replies.append(Reply(int(line[:3]), text.decode("utf-8", "backslashreplace")))
            self._lines = []
        del buffer[:start]

    async def reply(self) -> Reply:
        """The server's next reply, waited for at most the timeout."""
        replies = self._replies
        while not replies:
            if self._failure is not None:
                raise self._failure
            # A timer that closes the wire (whose failure is then raised here), not an
            # `asyncio.timeout` context: a tenth of the CPQ client's time went to those.
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(self.timeout_s, self._no_reply)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return replies.popleft()

    def _no_reply(self) -> None:
        self.close(TimeoutError(f"no reply from the server within {self.timeout_s:g}s"))

    async def command(self, line: str) -> Reply:
        """*line* sent, its reply read (one round trip)."""
        self.write(line.encode("ascii") + b"\r\n")
        return await self.reply()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- writing ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Back once the transport's buffer is below its high-water mark (bounded)."""
        if self._failure is not None:
            raise self._failure
        if not self._paused:
            return
        drained = self._drained = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self.timeout_s):
                await drained
        except TimeoutError:
            failure = TimeoutError(f"the server read nothing for {self.timeout_s:g}s")
            self.close(failure)
            raise failure from None
        finally:
            self._drained = None
        if self._failure is not None:
            raise self._failure

    def _wake_drain(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- TLS and the end ----------------------------------------------------------------
    async def start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        """The TLS handshake, after the server's 220 to STARTTLS (bounded by the timeout)."""
        if self._failure is not None:
            raise self._failure
        assert self.transport is not None
        # A compliant server says nothing between its 220 and the handshake: whatever
        # came is plaintext someone injected, never to be read as a reply.
        self._buffer.clear()
        self._lines = []
        self._replies.clear()
        try:
            transport = await asyncio.get_running_loop().start_tls(
                self.transport, self, context, server_side=False,
                server_hostname=server_hostname, ssl_handshake_timeout=self.timeout_s)
        except BaseException as exc:
            self.close(exc if isinstance(exc, Exception) else None)
            raise
        if transport is None:  # the loop's way of saying the connection went meanwhile
            failure = self._failure or ConnectionResetError("the server closed the connection")
            self.close(failure)
            raise failure
        self.transport = transport

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        if self.transport is None:
            return None
        return self.transport.get_extra_info("ssl_object")

    def sockname(self) -> tuple[str, int] | None:
        if self.transport is None:
            return None
        return self.transport.get_extra_info("sockname")

    @property
    def usable(self) -> bool:
        return self._failure is None and self.transport is not None

    def close(self, why: BaseException | None = None) -> None:
        """Close the connection now; *why* is what every later call raises."""
        if self._failure is None:
            self._failure = why or ConnectionAbortedError("the connection was closed")
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.close()
        self._wake()
        self._wake_drain()


# -- the body of a DATA -------------------------------------------------------------------

_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


def cut_pieces(body: bytes, chunk: int = CHUNK) -> Iterator[bytes]:
    """*body* in pieces of about *chunk* bytes, each but the last cut after a CRLF (or, in
    a line longer than *chunk*, anywhere but between a CR and its LF)."""
    start, size = 0, len(body)
    while start < size:
        end = min(start + chunk, size)
        if end < size:
            crlf = body.rfind(b"\r\n", start, end)
            if crlf >= start:
                end = crlf + 2
            elif body[end - 1] == 0x0D:  # never between the CR and the LF of a CRLF
                end = end - 1 if end - 1 > start else end + 1
        yield body[start:end]
        start = end


def stuffed(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """*pieces* of a body (CRLF line ends only; cut as `cut_pieces` cuts) dot-stuffed
    (RFC 5321 4.5.2), then the end of the data (`.` CRLF, after a CRLF if the body does
    not end with one). Only one piece is a copy at any time."""
    line_start = True
    for piece in pieces:
        if not piece:
            continue
        piece = piece.replace(b"\r\n.", b"\r\n..") if b"\r\n." in piece else piece
        yield b"." + piece if line_start and piece.startswith(b".") else piece
        line_start = piece.endswith(b"\r\n")
    yield b".\r\n" if line_start else b"\r\n.\r\n"


def stuffed_chunks(body: bytes, chunk: int = CHUNK) -> Iterator[bytes]:
    """*body* (CRLF line ends only) dot-stuffed in pieces of about *chunk* bytes."""
    return stuffed(cut_pieces(body, chunk))


def crlf(piece: bytes) -> bytes:
    """*piece* with every bare CR or LF made a CRLF (itself when it has none)."""
    pairs = piece.count(b"\r\n")
    if piece.count(b"\r") == pairs and piece.count(b"\n") == pairs:
        return piece
    return _LINE_ENDS.sub(b"\r\n", piece)


async def write_body(wire: SmtpWire, body: bytes | BodySource, *,
                     stream_above: int = STREAM_ABOVE, chunk: int = CHUNK) -> None:
    """*body* and the end of the data, after the server's 354: line ends made CRLF and
    dot-stuffed. Up to *stream_above* bytes in one write; a larger body in pieces of
    about *chunk* bytes (a `BodySource` read a piece at a time, never whole), each
    handed to the transport once the previous ones drained. A piece never ends between
    a CR and its LF (`cut_pieces`, the spool's `pieces`), so each is made CRLF alone."""
    size = len(body) if isinstance(body, bytes) else body.size
    if size <= stream_above:
        whole = body if isinstance(body, bytes) else body.read()
        wire.write(b"".join(stuffed([crlf(whole)])))
        return
    pieces = cut_pieces(body, chunk) if isinstance(body, bytes) else body.pieces(chunk)
    for piece in stuffed(map(crlf, pieces)):
        wire.write(piece)
        await wire.drain()
