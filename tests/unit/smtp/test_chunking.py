"""BDAT (RFC 3030) on a `ChunkingSMTP` session, and transactions pipelined past their end.

The messages of pipelined transactions are handed to the handler while the ones before
are still being stored; the replies stay in order, each message's once its handler
returned. Refused chunks are read and thrown away, never taken for commands. Real
sockets on 127.0.0.1; the handler holds a message back on request; every wait bounded.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import Listener
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp import chunking, replies
from pvoq.smtp.chunking import ChunkingSMTP
from pvoq.smtp.message import has_bare_newline
from pvoq.smtp.server import (
    BaseHandler,
    MessageInfo,
    PvoqEnvelope,
    PvoqSession,
    PvoqSMTP,
    ServerContext,
    start_listener,
)

ACCEPT_ALL = "$ACCEPTED\n  ACCEPT {}\nALL\n  $ACCEPTED (everyone)\n"
WAIT_S = 10.0
MESSAGE = b"Subject: one\r\n\r\n.a line starting with a dot\r\nbody\r\n"


def message(subject: str) -> bytes:
    return f"Subject: {subject}\r\n\r\nhello\r\n".encode()


class Gated(BaseHandler):
    """Keeps every message; one whose subject is in `held` waits for its event first."""

    commits_whole = True

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self.started: list[str] = []
        self.stored: list[bytes] = []
        self.held: dict[str, asyncio.Event] = {}

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        responses.insert(len(responses) - 1, replies.CHUNKING.more())
        return responses

    async def accept(self, server: PvoqSMTP, session: PvoqSession, envelope: PvoqEnvelope,
                     content: bytes, info: MessageInfo) -> str:
        self.started.append(info.subject)
        gate = self.held.get(info.subject)
        if gate is not None:
            await gate.wait()
        self.stored.append(content)
        return f"250 2.0.0 Ok: kept {info.subject}"


class Harness:
    def __init__(self, tmp_path: Path, **listener_changes: Any) -> None:
        listener_changes.setdefault("received_header", False)
        self.maillog = MailLog(tmp_path / "logs", appliance="m m.example.test", serial="SN")
        self.context = ServerContext(self.maillog, IdAllocator(tmp_path / "ids.json"),
                                     "m.example.test", spill_dir=tmp_path)
        self.listener = replace(Listener(
            name="cpq", protocol="SMTP", interface_name="Management", port=0,
            listen_queue_size=50, type="private", hat=parse_hat(ACCEPT_ALL),
            rat=make_rat([("ALL", "ACCEPT", 0)])), **listener_changes)
        self.handler = Gated(self.context)

    def log(self) -> str:
        self.maillog.flush()
        return self.maillog.path.read_text()

    def run(self, conversation: Any) -> Any:
        async def scenario() -> Any:
            server = await start_listener(self.listener, "127.0.0.1", lambda: ChunkingSMTP(
                self.handler, listener=self.listener, interface_ip="127.0.0.1",
                context=self.context))
            port = server.sockets[0].getsockname()[1]
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    assert (await asyncio.wait_for(reader.readline(), WAIT_S)).startswith(b"220")
                    writer.write(b"EHLO gw.example.test\r\n")
                    ehlo = await read_reply(reader)
                    assert "250-CHUNKING" in ehlo, ehlo
                    return await asyncio.wait_for(conversation(reader, writer), WAIT_S)
                finally:
                    writer.close()
            finally:
                server.close()
                await server.wait_closed()
        return asyncio.run(scenario())


async def read_reply(reader: asyncio.StreamReader) -> str:
    """One reply (all its lines), as text."""
    lines = []
    while True:
        line = (await asyncio.wait_for(reader.readline(), WAIT_S)).decode()
        assert line, "the server closed the connection"
        lines.append(line.rstrip("\r\n"))
        if line[3:4] != "-":
            return "\n".join(lines)


async def replies_of(reader: asyncio.StreamReader, n: int) -> list[str]:
    return [await read_reply(reader) for _ in range(n)]


def transaction(body: bytes, *, last_only: bool = True) -> bytes:
    return (b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n"
            + f"BDAT {len(body)} LAST\r\n".encode() + body)


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_one_chunk_last_is_the_message_byte_for_byte(harness: Harness) -> None:
    async def talk(reader: Any, writer: Any) -> list[str]:
        writer.write(transaction(MESSAGE))
        return await replies_of(reader, 3)

    answers = harness.run(talk)
    assert answers == ["250 2.1.0 Sender ok", "250 2.1.5 Recipient ok", "250 2.0.0 Ok: kept one"]
    assert harness.handler.stored == [MESSAGE]  # no dot-stuffing taken off: none was added


def test_the_trace_header_goes_on_top_where_the_listener_adds_one(tmp_path: Path) -> None:
    harness = Harness(tmp_path, received_header=True)

    async def talk(reader: Any, writer: Any) -> list[str]:
        writer.write(transaction(MESSAGE))
        return await replies_of(reader, 3)

    assert harness.run(talk)[2] == "250 2.0.0 Ok: kept one"
    stored = harness.handler.stored[0]
    assert stored.startswith(b"Received: from gw.example.test") and stored.endswith(MESSAGE)


def test_several_chunks_make_one_message(harness: Harness) -> None:
    async def talk(reader: Any, writer: Any) -> list[str]:
        writer.write(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n"
                     + b"BDAT 10\r\n" + MESSAGE[:10]
                     + f"BDAT {len(MESSAGE) - 10} LAST\r\n".encode() + MESSAGE[10:])
        return await replies_of(reader, 4)

    answers = harness.run(talk)
    assert answers[2] == "250 2.0.0 10 octets received"
    assert answers[3] == "250 2.0.0 Ok: kept one"
    assert harness.handler.stored == [MESSAGE]


def test_pipelined_transactions_are_stored_together_and_answered_in_order(
        harness: Harness) -> None:
    """The next messages reach the handler while the first is still being stored; every
    reply waits for the first message's, then all leave in order."""
    first = asyncio.Event()
    harness.handler.held["m1"] = first

    async def talk(reader: Any, writer: Any) -> list[str]:
        writer.write(b"".join(transaction(message(f"m{n}")) for n in (1, 2, 3)))
        for _ in range(200):  # the three are handed over while the first waits
            if len(harness.handler.started) == 3:
                break
            await asyncio.sleep(0.01)
        assert harness.handler.started == ["m1", "m2", "m3"]
        with pytest.raises(asyncio.TimeoutError):  # nothing before the first one's reply
            await asyncio.wait_for(reader.readline(), 0.3)
        first.set()
        return await replies_of(reader, 9)

    answers = harness.run(talk)
    assert [a for a in answers if "kept" in a] == [f"250 2.0.0 Ok: kept m{n}" for n in (1, 2, 3)]
    assert answers[0::3] == ["250 2.1.0 Sender ok"] * 3
    assert answers[2::3] == [f"250 2.0.0 Ok: kept m{n}" for n in (1, 2, 3)]


def test_no_more_than_max_unanswered_messages_are_taken_before_their_replies(
        harness: Harness) -> None:
    """A client pipelining 40 transfers while the stores are held back: the session takes
    32, then reads no more until replies go out; all 40 are stored and answered."""
    gate = asyncio.Event()
    for n in range(40):
        harness.handler.held[f"m{n}"] = gate

    async def talk(reader: Any, writer: Any) -> tuple[int, list[str]]:
        writer.write(b"".join(transaction(message(f"m{n}")) for n in range(40)))
        for _ in range(300):
            if len(harness.handler.started) >= chunking.MAX_UNANSWERED:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        taken = len(harness.handler.started)
        gate.set()
        return taken, await replies_of(reader, 120)

    taken, answers = harness.run(talk)
    assert taken == chunking.MAX_UNANSWERED == 32
    assert answers[2::3] == [f"250 2.0.0 Ok: kept m{n}" for n in range(40)]


def test_a_reply_that_must_be_written_waits_for_the_message_before(harness: Harness) -> None:
    gate = asyncio.Event()
    harness.handler.held["m1"] = gate

    async def talk(reader: Any, writer: Any) -> list[str]:
        writer.write(transaction(message("m1")) + b"NOOP\r\nQUIT\r\n")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readline(), 0.3)
        gate.set()
        answers = await replies_of(reader, 5)
        assert await asyncio.wait_for(reader.read(), WAIT_S) == b""  # closed after 221
        return answers

    answers = harness.run(talk)
    assert answers[2:] == ["250 2.0.0 Ok: kept m1", "250 OK", "221 Bye"]


def test_a_refused_chunk_is_read_and_thrown_away_not_taken_for_commands(
        harness: Harness) -> None:
    hostile = b"QUIT\r\nMAIL FROM:<x@example.org>\r\n"

    async def talk(reader: Any, writer: Any) -> list[str]:
        writer.write(f"BDAT {len(hostile)} LAST\r\n".encode() + hostile + b"NOOP\r\n")
        return await replies_of(reader, 2)

    answers = harness.run(talk)
    assert answers == [str(replies.NEED_MAIL), "250 OK"]
    assert harness.handler.stored == []


def test_over_the_size_limit_552_and_the_next_transaction_is_fresh(tmp_path: Path) -> None:
    harness = Harness(tmp_path, max_message_size=100)
    big = b"Subject: big\r\n\r\n" + b"x" * 60 + b"\r\n"

    async def talk(reader: Any, writer: Any) -> list[str]:
        writer.write(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n"
                     + f"BDAT {len(big)}\r\n".encode() + big
                     + f"BDAT {len(big)}\r\n".encode() + big    # over: 552
                     + b"BDAT 5\r\nxxxxx"                         # after a refusal: 503
                     + b"BDAT 3 LAST\r\nyyy"                      # 503, the transaction ends
                     + transaction(message("small")))
        return await replies_of(reader, 9)

    answers = harness.run(talk)
    assert answers[2] == f"250 2.0.0 {len(big)} octets received"
    assert answers[3] == str(replies.TOO_MUCH_DATA)
    assert answers[4:6] == [str(replies.CHUNK_AFTER_FAILURE)] * 2
    assert answers[6:] == ["250 2.1.0 Sender ok", "250 2.1.5 Recipient ok",
                           "250 2.0.0 Ok: kept small"]
    assert harness.handler.stored == [message("small")]


@pytest.mark.parametrize("line", [b"BDAT lots LAST", b"BDAT", b"BDAT -5 LAST",
                                  b"BDAT 5 FIRST"])
def test_a_size_that_is_not_a_number_closes_the_connection(harness: Harness,
                                                           line: bytes) -> None:
    async def talk(reader: Any, writer: Any) -> tuple[str, bytes]:
        writer.write(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n"
                     + line + b"\r\nQUIT\r\n")
        answers = await replies_of(reader, 3)
        return answers[2], await asyncio.wait_for(reader.read(), WAIT_S)

    answer, rest = harness.run(talk)
    assert answer == str(replies.BDAT_SYNTAX) and rest == b""
    assert "BDAT without a size" in harness.log()


def test_data_after_a_chunk_is_503(harness: Harness) -> None:
    async def talk(reader: Any, writer: Any) -> list[str]:
        writer.write(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n"
                     b"BDAT 4\r\nabcdDATA\r\nRSET\r\n")
        return await replies_of(reader, 5)

    answers = harness.run(talk)
    assert answers[3:] == [str(replies.DATA_AFTER_BDAT), "250 2.0.0 Ok"]


def test_the_listener_rules_hold_for_a_bdat_message(harness: Harness) -> None:
    long_line = b"Subject: long\r\n\r\n" + b"y" * 1200 + b"\r\n"
    bare_lf = b"Subject: lf\r\n\r\nbare\nline\r\n"

    async def talk(reader: Any, writer: Any) -> list[str]:
        writer.write(transaction(long_line) + transaction(bare_lf))
        return await replies_of(reader, 6)

    answers = harness.run(talk)
    assert answers[2] == str(replies.LINE_TOO_LONG)
    assert answers[5] == str(replies.BARE_NEWLINE)
    assert harness.handler.stored == []


def test_a_client_that_leaves_loses_only_the_reply(harness: Harness) -> None:
    gate = asyncio.Event()
    harness.handler.held["m1"] = gate

    async def talk(reader: Any, writer: Any) -> None:
        writer.write(transaction(message("m1")))
        for _ in range(200):
            if harness.handler.started:
                break
            await asyncio.sleep(0.01)
        writer.close()
        await asyncio.sleep(0.1)
        gate.set()
        for _ in range(200):
            if harness.handler.stored:
                break
            await asyncio.sleep(0.01)

    harness.run(talk)
    assert harness.handler.stored == [message("m1")]
    assert "stored, but the client left before the reply ('250 2.0.0 Ok: kept m1')" \
        in harness.log()


def test_a_client_waiting_for_each_reply_gets_it_once_the_message_before_is_answered(
        harness: Harness) -> None:
    """A MAIL accepted while a message is stored is held (not written before that
    message's reply), and written with it when no command follows."""
    gate = asyncio.Event()
    harness.handler.held["m1"] = gate

    async def talk(reader: Any, writer: Any) -> list[str]:
        writer.write(transaction(message("m1")))
        for _ in range(200):
            if harness.handler.started:
                break
            await asyncio.sleep(0.01)
        writer.write(b"MAIL FROM:<c@example.org>\r\n")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readline(), 0.3)
        gate.set()
        answers = await replies_of(reader, 4)
        writer.write(b"RCPT TO:<d@example.com>\r\n")
        answers.append(await read_reply(reader))
        return answers

    answers = harness.run(talk)
    assert answers[2:] == ["250 2.0.0 Ok: kept m1", "250 2.1.0 Sender ok",
                           "250 2.1.5 Recipient ok"]


@given(content=st.binary(max_size=400), piece=st.integers(min_value=2, max_value=64),
       limit=st.integers(min_value=3, max_value=40))
@example(content=b"ab\r\ncd", piece=3, limit=4)
@example(content=b"x" * 64, piece=8, limit=1000)
@example(content=b"ab\rcd\r\n", piece=3, limit=1000)
@example(content=b"ab\r\ncd\n", piece=4, limit=1000)
def test_the_line_check_is_the_data_rule_whatever_the_pieces(content: bytes, piece: int,
                                                            limit: int) -> None:
    """Measured a piece at a time (cut after a CRLF, a line longer than a piece taken
    whole), the answer is DATA's rule on the whole message: a line longer than *limit*
    octets with its CRLF; and, when none is, whether a CR or LF stands alone is the
    handler's own check on the whole message."""
    too_long = max(len(line) for line in content.split(b"\r\n")) + 2 > limit
    original = chunking.LINES_PIECE
    chunking.LINES_PIECE = piece
    try:
        assert chunking._line_check(content, limit) == \
            (too_long, not too_long and has_bare_newline(content))
    finally:
        chunking.LINES_PIECE = original
