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
from dataclasses import dataclass

END = b"\r\n.\r\n"
EMPTY_END = b".\r\n"
NOMINAL, TOO_LONG, TOO_MUCH = "nominal", "too_long", "too_much"
DATA_READ_LIMIT = 256 * 1024  # what may wait in the reader, unread, during DATA


@dataclass
class DataBlock:
    state: str          # NOMINAL, TOO_LONG or TOO_MUCH
    content: bytes      # the message, dot-stuffing removed (empty unless NOMINAL)


async def read_data(reader: asyncio.StreamReader, *, size_limit: int | None,
                    line_limit: int) -> DataBlock | None:
    """The data up to its end, or None if the connection ended first."""
    # The reader's limit is a command line's (1001 octets): above twice that it
    # pauses the socket, and every packet of a message would pause and resume it.
    # While the data comes, the limit is a block's; this function bounds memory.
    limit = reader._limit  # type: ignore[attr-defined]
    reader._limit = max(limit, DATA_READ_LIMIT)  # type: ignore[attr-defined]
    try:
        return await _read_data(reader, size_limit=size_limit, line_limit=line_limit)
    finally:
        reader._limit = limit  # type: ignore[attr-defined]


async def _read_data(reader: asyncio.StreamReader, *, size_limit: int | None,
                     line_limit: int) -> DataBlock | None:
    buf: bytearray = reader._buffer  # type: ignore[attr-defined]
    state = NOMINAL
    discarded = 0    # bytes dropped while too much (only the end is looked for then)
    searched = 0     # where the search for the end goes on from
    while True:
        if not discarded and buf.startswith(EMPTY_END):
            end, cut = 0, len(EMPTY_END)
            break
        found = buf.find(END, max(0, searched - len(END) + 1))
        if found >= 0:
            end, cut = found + 2, found + len(END)  # the data keeps its last CRLF
            break
        if size_limit and state != TOO_MUCH and len(buf) > size_limit + len(END):
            state = TOO_MUCH
        if state == TOO_MUCH and len(buf) > len(END):
            # Keep only what could be the start of the end marker.
            drop = len(buf) - len(END)
            discarded += drop
            del buf[:drop]
        searched = len(buf)
        if reader._eof:  # type: ignore[attr-defined]
            return None
        await reader._wait_for_data("read_data")  # type: ignore[attr-defined]
    block = bytes(buf[:end])
    del buf[:cut]
    reader._maybe_resume_transport()  # type: ignore[attr-defined]
    if state == TOO_MUCH or (size_limit and len(block) > size_limit):
        return DataBlock(TOO_MUCH, b"")
    if block and max(map(len, block.split(b"\r\n"))) + 2 > line_limit:
        return DataBlock(TOO_LONG, b"")
    if block.startswith(b"."):
        block = block[1:]
    return DataBlock(NOMINAL, block.replace(b"\r\n.", b"\r\n"))
