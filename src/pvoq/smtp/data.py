"""Reading the message after DATA in one piece instead of line by line.

aiosmtpd reads DATA one line at a time, a coroutine call and a dozen Python
statements for each of a message's hundred-odd lines: on a busy listener a
fifth of the gateway's CPU. `read_data` takes what has arrived as a block,
finds the end (`<CRLF>.<CRLF>`, or `.<CRLF>` first of all for an empty
message), and applies the same rules in bulk:

- a line longer than the line length limit (RFC 5321 4.5.3.1.6, CRLF
  included): `too_long`;
- more than the size limit (the line bytes, CRLF included): `too_much`, and
  what follows is discarded as it arrives, to the end of the data;
- dot-stuffing removed (RFC 5321 4.5.2);
- bytes after the end (pipelined commands) stay in the reader for the
  command loop.

The end is strictly `<CRLF>.<CRLF>`: a bare LF around the dot ends nothing
(the data, bare LF included, then fails the listener's bare CR/LF check).
It uses the reader's buffer directly, as aiosmtpd itself does.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pvoq.smtp.message import has_bare_newline, line_facts

END = b"\r\n.\r\n"
EMPTY_END = b".\r\n"
NOMINAL, TOO_LONG, TOO_MUCH = "nominal", "too_long", "too_much"
FAILED = "failed"  # the temporary file of a large message could not be written or read
DATA_READ_LIMIT = 256 * 1024  # what may wait in the reader, unread, during DATA
SPILL_ABOVE = 1024 * 1024  # a message past this is gathered in a temporary file


@dataclass
class DataBlock:
    state: str          # NOMINAL, TOO_LONG, TOO_MUCH or FAILED
    content: bytes      # the message, dot-stuffing removed (empty unless NOMINAL)
    error: str = ""     # FAILED: what failed
    # NOMINAL: whether the content holds a CR or LF that is not part of a CRLF
    # (`message.has_bare_newline`), found as its lines were measured.
    bare: bool | None = field(default=None, compare=False)


async def read_data(reader: asyncio.StreamReader, *, size_limit: int | None,
                    line_limit: int, prefix: bytes = b"",
                    spill_dir: Path | None = None) -> DataBlock | None:
    """The data up to its end, or None if the connection ended first.

    *prefix* (a trace header) is put before the message in the block's content;
    it is not counted against *size_limit* (the caller subtracts it). A message
    larger than `SPILL_ABOVE` is gathered in a temporary file in *spill_dir*."""
    # The reader's limit is a command line's (1001 octets): above twice that it
    # pauses the socket, and every packet of a message would pause and resume it.
    # While the data comes, the limit is a block's; this function bounds memory.
    limit = reader._limit  # type: ignore[attr-defined]
    reader._limit = max(limit, DATA_READ_LIMIT)  # type: ignore[attr-defined]
    try:
        return await _read_data(reader, size_limit=size_limit, line_limit=line_limit,
                                prefix=prefix, spill_dir=spill_dir)
    finally:
        reader._limit = limit  # type: ignore[attr-defined]


class DataContent:
    """The message as it is taken from the reader's buffer: whole lines at a time,
    dot-stuffing removed and line lengths checked on each piece, so that neither the
    reader's buffer nor a list of lines ever holds the whole message. Past
    `SPILL_ABOVE` bytes it goes on in an unnamed temporary file in *spill_dir* and is
    read back once, at the end: the message is then in memory once, not also as the
    buffer it was gathered in (a file that cannot be written keeps it in memory)."""

    def __init__(self, prefix: bytes, line_limit: int, spill_dir: Path | None) -> None:
        self.out = bytearray(prefix)
        self.line_limit = line_limit
        self.raw = 0          # the data's bytes taken so far (dot-stuffing and CRLFs included)
        self.too_long = False
        self.spill_dir = spill_dir
        self.file: BinaryIO | None = None
        self.failed = ""      # why the temporary file failed, if it did
        self.bare = has_bare_newline(prefix)  # a CR or LF outside a CRLF, so far

    def take(self, piece: bytes | bytearray) -> None:
        """Take *piece*: whole lines, each but the first starting after a CRLF that the
        piece begins with (the first piece of the data starts at a line's start)."""
        first = self.raw == 0
        self.raw += len(piece)
        if self.too_long or self.failed:
            return
        # A piece starts at a line's start, so no CRLF is cut between two pieces.
        longest, bare = line_facts(piece)
        if piece and longest + 2 > self.line_limit:
            self.too_long = True
            self.drop()
            return
        self.bare = self.bare or bare
        if first and piece.startswith(b"."):
            piece = piece[1:]
        self.add(piece.replace(b"\r\n.", b"\r\n") if b"\r\n." in piece else piece)

    def add(self, data: bytes | bytearray) -> None:
        self.out += data
        if len(self.out) > SPILL_ABOVE and self.spill_dir is not None:
            try:
                if self.file is None:  # closed in `drop`
                    self.file = tempfile.TemporaryFile(  # noqa: SIM115
                        prefix="data-", suffix=".tmp", dir=self.spill_dir)
                self.file.write(self.out)
                self.file.flush()
            except OSError as exc:  # the rest is discarded; the client is told to retry
                self.failed = f"{type(exc).__name__}: {exc}"
                self.drop()
                return
            self.out = bytearray()

    def result(self) -> DataBlock:
        """The whole message, once (or why the temporary file failed)."""
        out, self.out = self.out, bytearray()
        if self.file is None:
            return DataBlock(NOMINAL, bytes(out), bare=self.bare)
        try:
            self.file.write(out)
            del out
            self.file.seek(0)
            return DataBlock(NOMINAL, self.file.read(), bare=self.bare)
        except OSError as exc:
            return DataBlock(FAILED, b"", f"{type(exc).__name__}: {exc}")
        finally:
            self.drop()

    def drop(self) -> None:
        self.out = bytearray()
        if self.file is not None:
            self.file.close()
            self.file = None


async def _read_data(reader: asyncio.StreamReader, *, size_limit: int | None,
                     line_limit: int, prefix: bytes, spill_dir: Path | None
                     ) -> DataBlock | None:
    buf: bytearray = reader._buffer  # type: ignore[attr-defined]
    content = DataContent(prefix, line_limit, spill_dir)
    try:
        return await _read_into(reader, buf, content, size_limit=size_limit,
                                line_limit=line_limit)
    finally:
        content.drop()


async def _read_into(reader: asyncio.StreamReader, buf: bytearray, content: DataContent, *,
                     size_limit: int | None, line_limit: int) -> DataBlock | None:
    state = NOMINAL
    discarded = 0    # bytes dropped while too much (only the end is looked for then)
    searched = 0     # where the search for the end goes on from
    while True:
        if not discarded and not content.raw and buf.startswith(EMPTY_END):
            end, cut = 0, len(EMPTY_END)
            break
        found = buf.find(END, max(0, searched - len(END) + 1))
        if found >= 0:
            end, cut = found + 2, found + len(END)  # the data keeps its last CRLF
            break
        seen = content.raw + discarded + len(buf)
        if size_limit and state != TOO_MUCH and seen > size_limit + len(END):
            state = TOO_MUCH
            content.drop()
        if state == TOO_MUCH or content.too_long or content.failed:
            if len(buf) > len(END):
                # Keep only what could be the start of the end marker.
                drop = len(buf) - len(END)
                discarded += drop
                del buf[:drop]
        else:
            # Take the whole lines that have come, up to (not including) the last CRLF:
            # an end marker starts with it. A line already too long ends the taking.
            last = buf.rfind(b"\r\n")
            if last > 0:
                with memoryview(buf) as view:
                    piece = bytes(view[:last])
                content.take(piece)
                del buf[:last]
                reader._maybe_resume_transport()  # type: ignore[attr-defined]
            if len(buf) - (buf.rfind(b"\r\n") + 2 if last >= 0 else 0) > line_limit:
                content.too_long = True  # a line longer than allowed and still coming
                content.drop()
        searched = len(buf)
        if reader._eof:  # type: ignore[attr-defined]
            return None
        await reader._wait_for_data("read_data")  # type: ignore[attr-defined]
    if state != TOO_MUCH and not content.too_long and not content.failed:
        with memoryview(buf) as view:
            piece = bytes(view[:max(end - 2, 0)])
        content.take(piece)
    else:
        content.raw += max(end - 2, 0)
    size = content.raw + discarded + (2 if end else 0)
    del buf[:cut]
    reader._maybe_resume_transport()  # type: ignore[attr-defined]
    if state == TOO_MUCH or (size_limit and size > size_limit):
        return DataBlock(TOO_MUCH, b"")
    if content.too_long:
        return DataBlock(TOO_LONG, b"")
    if end and not content.failed:
        content.add(b"\r\n")
    if content.failed:
        return DataBlock(FAILED, b"", content.failed)
    return content.result()
