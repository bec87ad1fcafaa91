"""BDAT (RFC 3030 CHUNKING), and transactions pipelined past the end of their message.

A session class built on `ChunkingSMTP` takes `BDAT <size> [LAST]`: exactly
<size> octets follow the command line, taken as they are (no dot-stuffing, no
end marker). The listener's rules for DATA hold for the message they make:
the size limit (552 once the chunks pass it), the line length limit (500),
and the handler's checks (a bare CR or LF is refused there).

What BDAT adds over DATA is that nothing waits for the message's own reply.
A client that has sent `BDAT <size> LAST` with its message may send the next
transaction (MAIL, RCPT, ..., BDAT) at once, in the same pipelined group
(RFC 3030 4.2, RFC 2920): the session hands the finished message to its
handler as a task of its own and goes on reading. The next message is read,
checked and handed over while the one before is being stored, so a store that
waits for a disk (the manager's group commit) takes the transfers of several
transactions of one connection together. The replies stay in order:

- the reply of a message handed over (`250` once the handler made it
  durable, or its refusal) is written when its handler returns, after the
  replies of every message handed over before it, and together with the
  replies held for the commands of its own transaction;
- any other reply that must be written (an error, a `354`, `221 Bye`) waits
  until the replies of the messages handed over before it are written; a
  `250` that may be held (`LimitedSMTP.hold_reply`) is held as usual.

`BDAT ... LAST` ends the transaction whatever it is answered (stored,
refused, or a chunk over the size limit), so that a pipelined next MAIL always
finds a fresh one. A chunk refused (`503` without MAIL or RCPT, `552` over the
size) is read all the same and thrown away, and so are the later chunks of
that transaction, each answered `503`. A size that is not a number cannot be
skipped: `501`, and the connection is closed.

At most `MAX_UNANSWERED` messages of a session wait for their reply at once,
and replies written wait for the client to read them: past either, the
session stops reading until a store returns or the client reads (TCP holds
the client back), so a client that pipelines without reading its replies
gets neither memory nor tasks without end.

A timed limit reached (session lifetime) while messages are handed over and
unanswered waits for their replies, as it waits for a command under way. A
client that leaves before a reply loses only the reply: the message is stored
all the same (a gateway sends it again and hears it is stored already).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiosmtpd.smtp import MISSING, syntax

from pvoq.smtp import replies
from pvoq.smtp.data import DATA_READ_LIMIT, DataContent
from pvoq.smtp.message import line_facts
from pvoq.smtp.replies import StatusCode
from pvoq.smtp.server import PvoqEnvelope, PvoqSMTP

READ_PIECE = 256 * 1024  # bytes of a chunk taken from the reader at a time
# Messages a session holds handed over and unanswered before it reads on (a pvoq sender
# has at most `smtp.client.TRANSACTIONS_IN_FLIGHT`, 16): a client that pipelines without
# reading its replies is held back by TCP, not given memory and tasks without end.
MAX_UNANSWERED = 32
LINES_PIECE = 1024 * 1024  # bytes of a message whose line lengths are measured at a time
_BDAT_ARG = re.compile(r"([0-9]{1,15})(?:[ \t]+(LAST))?[ \t]*\Z", re.I)


class ChunkingSMTP(PvoqSMTP):
    """A session that takes BDAT, and reads on while the messages handed over are stored."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._reply_tail: asyncio.Future[None] | None = None  # the last reply handed over
        self._unanswered = 0  # messages handed over whose reply is not written yet
        self._answered = asyncio.Event()  # set as each of them is answered
        self._finishing: set[asyncio.Task[None]] = set()
        self._answers: list[bytes] | None = None  # replies of this loop turn, not yet written

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # again after STARTTLS, with a new reader
        # Pipelined transactions keep messages waiting in the reader behind the command
        # being read: with a command line's limit (1,001 octets) it would pause and resume
        # the socket for every packet of them. A command line is still held to its own
        # limit (aiosmtpd measures each one read).
        reader = self._reader
        reader._limit = max(reader._limit, DATA_READ_LIMIT)  # type: ignore[attr-defined]

    # -- replies in order ---------------------------------------------------------------
    async def _replies_before(self) -> None:
        """Back once the reply of every message handed over so far is written."""
        tail = self._reply_tail
        if tail is not None and not tail.done():
            await asyncio.shield(tail)

    def _answer(self, data: bytes) -> None:
        """*data* (a message's reply) written at the end of this turn of the event loop,
        in one write with the others of the turn: a group commit wakes the handlers of
        several messages of a connection at once, and each write is a TLS record and a
        system call that wakes the client. Any other reply writes these first."""
        if self._answers is None:
            self._answers = [data]
            self.loop.call_soon(self._write_answers)
        else:
            self._answers.append(data)

    def _write_answers(self) -> None:
        answers, self._answers = self._answers, None
        if answers and self.transport is not None and not self.transport.is_closing():
            self.context.maillog.flush()  # the client hears of its messages after the log
            self._writer.write(b"".join(answers))

    async def push(self, status: str | bytes | StatusCode) -> None:
        if self._unanswered:
            line = status if isinstance(status, bytes) else \
                str(status).encode("utf-8" if self.enable_SMTPUTF8 else "ascii")
            if line[:4] == b"250 " and self._may_hold:
                # A MAIL, RCPT, RSET or XCPQ accepted: its reply goes with the next one
                # written, or once the messages before are answered (`_finish`).
                self._reply_lines.append(line)
                return
            if line[3:4] != b"-":  # a multi-line reply's lines are gathered, not written
                await self._replies_before()
        self._write_answers()  # the replies of messages answered in this turn go first
        await super().push(status)

    async def _push_now(self, reply: StatusCode) -> None:
        await self._replies_before()  # a limit's 421 comes after the stored messages' replies
        self._write_answers()
        await super()._push_now(reply)

    def _limit_reached(self, reply: StatusCode, reason: str) -> None:
        if self._unanswered:  # said once the messages handed over have their replies
            self._ending = (reply, reason)
            return
        self._write_answers()
        super()._limit_reached(reply, reason)

    # -- BDAT ---------------------------------------------------------------------------
    @syntax("BDAT <size> [LAST]")
    async def smtp_BDAT(self, arg: str) -> None:
        arg = arg or ""
        match = _BDAT_ARG.match(arg)
        if match is None:  # the chunk's end is unknown: it cannot be skipped
            self.log_cut(f"BDAT without a size: {arg[:40]!r}")
            await self.push(replies.BDAT_SYNTAX)
            if self.transport is not None:
                self.transport.close()
            return
        size, last = int(match.group(1)), match.group(2) is not None
        envelope = self.envelope
        assert isinstance(envelope, PvoqEnvelope)
        refusal = self._chunk_refusal(envelope, size)
        content = envelope.chunks
        if refusal is None and content is None:
            # The trace header goes on top and counts against the size limit, as in DATA.
            trace = self.trace_header()
            envelope.chunked = len(trace)
            refusal = self._chunk_refusal(envelope, size)
            content = DataContent(trace, self.line_length_limit, self.context.spill_dir)
        if not await self._read_chunk(size, None if refusal is not None else content):
            if content is not None:
                content.drop()
            return  # the connection ended in the middle of the chunk
        if refusal is not None:
            if content is not None:
                content.drop()
            envelope.chunks = None
            if last:
                self._set_post_data_state()
            elif envelope.mail_from:
                envelope.chunks_refused = True  # its later chunks are thrown away too
            await self.push(refusal)
            return
        assert content is not None
        envelope.chunks = content
        envelope.chunked += size
        if not last:
            await self.push(replies.CHUNK_OK.format(size=size))
            return
        self._set_post_data_state()  # the transaction ends here, whatever its reply
        if content.failed:
            content.drop()
            self.context.maillog.warning(f"ICID {self.psession().icid} message refused: its "
                                         f"temporary file failed: {content.failed}")
            await self.push(replies.LOCAL_ERROR)
            return
        block = content.result()
        if block.error:
            self.context.maillog.warning(f"ICID {self.psession().icid} message refused: its "
                                         f"temporary file failed: {block.error}")
            await self.push(replies.LOCAL_ERROR)
            return
        too_long, envelope.bare_newline = _line_check(block.content, self.line_length_limit)
        if too_long:
            await self.push(replies.LINE_TOO_LONG)
            return
        envelope.content = envelope.original_content = block.content
        refused = self.check_message(envelope)
        if refused is not None:
            await self.push(refused)
            return
        self._hand_over(envelope)
        await self._room()

    async def _room(self) -> None:
        """Back once fewer than MAX_UNANSWERED messages wait for their reply and the
        client reads the replies written (the transport's buffer is drained)."""
        while self._unanswered >= MAX_UNANSWERED and self.transport is not None:
            self._answered.clear()
            await self._answered.wait()
        if self._paused and self.transport is not None:  # type: ignore[attr-defined]
            await self._writer.drain()

    async def smtp_DATA(self, arg: str) -> None:
        envelope = self.envelope
        assert isinstance(envelope, PvoqEnvelope)
        if envelope.chunks is not None or envelope.chunks_refused:
            await self.push(replies.DATA_AFTER_BDAT)  # RFC 3030 2: one or the other
            return
        refused = self.check_message(envelope)  # before 354: no body is read for nothing
        if refused is not None:
            self._set_post_data_state()  # the transaction is over, as after any DATA
            await self.push(refused)
            return
        await super().smtp_DATA(arg)

    def _chunk_refusal(self, envelope: PvoqEnvelope, size: int) -> StatusCode | None:
        """Why the chunk of *size* octets must be read and thrown away, or None."""
        if not self.psession().host_name or not envelope.mail_from:
            return replies.NEED_MAIL
        if not envelope.rcpt_tos:
            return replies.NEED_RCPT
        if envelope.chunks_refused:
            return replies.CHUNK_AFTER_FAILURE
        limit = self.data_size_limit
        if limit and envelope.chunked + size > limit:
            return replies.TOO_MUCH_DATA
        return None

    async def _read_chunk(self, size: int, content: DataContent | None) -> bool:
        """*size* octets from the reader into *content* (None: thrown away); False if the
        connection ended first."""
        reader = self._reader
        left = size
        while left:
            piece = await reader.read(min(left, READ_PIECE))
            if not piece:
                return False
            left -= len(piece)
            if content is not None and not content.failed:
                content.add(piece)
            self._reset_timeout()  # a large chunk keeps the session from idling
        return True

    def check_message(self, envelope: PvoqEnvelope) -> str | StatusCode | None:
        """A refusal of the whole message before its handler sees it (a subclass's: the
        CPQ metadata), or None: at DATA before its 354, at BDAT after the last chunk."""
        return None

    # -- the message handed over --------------------------------------------------------
    def _hand_over(self, envelope: PvoqEnvelope) -> None:
        """The message of *envelope* to the handler, as a task; its reply written in turn
        with the replies held for its transaction's commands."""
        envelope.handed_over = True
        held = self._held + self._reply_lines  # the older first (see `PvoqSMTP.push`)
        self._held, self._reply_lines = [], []
        before = self._reply_tail
        written: asyncio.Future[None] = self.loop.create_future()
        self._reply_tail = written
        self._unanswered += 1
        task = self.loop.create_task(self._finish(envelope, held, before, written))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(self, envelope: PvoqEnvelope, held: list[bytes],
                      before: asyncio.Future[None] | None, written: asyncio.Future[None]) -> None:
        try:
            hook = self._handle_hooks.get("DATA")
            try:
                status = MISSING if hook is None else await hook(self, self.session, envelope)
            except Exception as exc:  # the client must retry; nothing was acknowledged
                status = await self.handle_exception(exc)
            reply = str(replies.DATA_OK if status is MISSING else status)
            if before is not None:
                await before
            lines = [*held, reply.encode("ascii", "backslashreplace")]
            if self._unanswered == 1 and not self._busy:
                # The last answer owed, and no command under way: the replies held for the
                # commands read since leave with it (a client may be waiting for them).
                lines += self._held + self._reply_lines
                self._held, self._reply_lines = [], []
            line = b"\r\n".join(lines)
            if self.transport is None or self.transport.is_closing():
                if reply.startswith("2"):
                    self.context.maillog.info(f"MID {envelope.mid} stored, but the client "
                                              f"left before the reply ('{reply}')")
                return
            self._answer(line + b"\r\n")
            if reply.startswith("2"):
                self.message_accepted()
        finally:
            self._unanswered -= 1
            self._answered.set()
            written.set_result(None)
            if not self._unanswered and self._ending is not None and not self._busy:
                await self._end(*self._ending)


def _line_check(content: bytes, limit: int) -> tuple[bool, bool]:
    """`(too_long, bare)`: whether a line of *content* is longer than *limit* octets with
    its CRLF, counted as `smtp.data` counts for DATA, and whether it holds a CR or LF
    that is not part of a CRLF (`message.line_facts`); a megabyte at a time, cut after a
    CRLF. *bare* is only known when no line is too long."""
    start, size, bare = 0, len(content), False
    while start < size:
        end = min(start + LINES_PIECE, size)
        if end < size:
            cut = content.rfind(b"\r\n", start, end)
            if cut < start:  # a line longer than the piece: up to its end, whole
                cut = content.find(b"\r\n", end - 1)
            end = size if cut < 0 else cut + 2
        longest, piece_bare = line_facts(content[start:end])
        if longest + 2 > limit:
            return True, False
        bare = bare or piece_bare
        start = end
    return False, bare
