"""Replies to a pipelined group (RFC 2920) leave the server in one write.

A MAIL, RCPT, RSET or XCPQ reply waits while the client's next command is already read
in, and goes out with the next reply that does not wait (DATA's 354 at the latest);
commands sent one at a time are answered one at a time; a limit's 421 sends whatever
waits first, in order. Real sockets on 127.0.0.1, the standard event loop (whose
transports let the test count the server's writes); every wait bounded.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import Listener
from pvoq.maillog import IdAllocator, MailLog
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


class Keeper(BaseHandler):
    """Takes every message (nothing to store in these tests)."""

    async def accept(self, server: PvoqSMTP, session: PvoqSession, envelope: PvoqEnvelope,
                     content: bytes, info: MessageInfo) -> str:
        return "250 2.0.0 Ok: kept"


class CountedSMTP(PvoqSMTP):
    """A session whose transport's writes are recorded, one entry per write."""

    writes: list[bytes]

    def connection_made(self, transport: Any) -> None:
        write = transport.write

        def recorded(data: bytes) -> None:
            self.writes.append(bytes(data))
            write(data)

        transport.write = recorded
        super().connection_made(transport)


def run(tmp_path: Path, conversation: Any, **listener_changes: Any) -> tuple[Any, list[bytes]]:
    """Run *conversation(reader, writer)* against a fresh listener; its result and the
    server's writes after the greeting."""
    maillog = MailLog(tmp_path / "logs", appliance="gateway gw.example.test", serial="SN")
    context = ServerContext(maillog, IdAllocator(tmp_path / "ids.json"), "gw.example.test")
    listener = replace(Listener(
        name="IncomingMail", protocol="SMTP", interface_name="Incoming Mail", port=0,
        listen_queue_size=50, type="public", hat=parse_hat(ACCEPT_ALL),
        rat=make_rat([("ALL", "ACCEPT", 0)])), **listener_changes)
    handler = Keeper(context)
    writes: list[bytes] = []

    def session() -> CountedSMTP:
        smtp = CountedSMTP(handler, listener=listener, interface_ip="127.0.0.1",
                           context=context)
        smtp.writes = writes
        return smtp

    async def scenario() -> Any:
        server = await start_listener(listener, "127.0.0.1", session)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                greeting = await asyncio.wait_for(reader.readline(), WAIT_S)
                assert greeting.startswith(b"220 ")
                writes.clear()
                return await asyncio.wait_for(conversation(reader, writer), WAIT_S)
            finally:
                writer.close()
        finally:
            server.close()
            await server.wait_closed()

    try:
        return asyncio.run(scenario()), writes
    finally:
        maillog.close()


async def read_replies(reader: asyncio.StreamReader, count: int) -> list[bytes]:
    """*count* whole replies (a multi-line one counts once), each its last line's code."""
    codes: list[bytes] = []
    while len(codes) < count:
        line = await reader.readline()
        assert line, f"the server closed after {codes}"
        if line[3:4] != b"-":
            codes.append(line[:3])
    return codes


def test_a_pipelined_group_is_answered_in_one_write(tmp_path: Path) -> None:
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> list[bytes]:
        writer.write(b"EHLO client.example\r\n")
        codes = await read_replies(reader, 1)
        writer.write(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<b@example.com>\r\n"
                     b"RCPT TO:<c@example.com>\r\nDATA\r\n")
        codes += await read_replies(reader, 4)
        writer.write(b"Subject: x\r\n\r\nbody\r\n.\r\n")
        codes += await read_replies(reader, 1)
        writer.write(b"QUIT\r\n")
        codes += await read_replies(reader, 1)
        return codes

    codes, writes = run(tmp_path, talk)
    assert codes == [b"250", b"250", b"250", b"250", b"354", b"250", b"221"]
    group = [w for w in writes if b"354" in w]
    assert len(group) == 1
    assert [line[:3] for line in group[0].split(b"\r\n") if line] == \
        [b"250", b"250", b"250", b"354"]
    assert len(writes) == 4  # EHLO's, the group's, the message's, QUIT's


def test_commands_one_at_a_time_get_a_write_each(tmp_path: Path) -> None:
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> list[bytes]:
        codes = []
        for line in (b"HELO client.example", b"MAIL FROM:<a@sender.example>",
                     b"RCPT TO:<b@example.com>", b"RSET", b"QUIT"):
            writer.write(line + b"\r\n")
            codes += await read_replies(reader, 1)
        return codes

    codes, writes = run(tmp_path, talk)
    assert codes == [b"250", b"250", b"250", b"250", b"221"]
    assert [w[:3] for w in writes] == codes


def test_a_limit_reached_in_a_group_sends_what_waits_first(tmp_path: Path) -> None:
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        writer.write(b"HELO client.example\r\n")
        await read_replies(reader, 1)
        writer.write(b"MAIL FROM:<a@sender.example>\r\nRSET\r\nRSET\r\nRSET\r\nNOOP\r\n")
        return await reader.read()  # until the server closes

    rest, writes = run(tmp_path, talk, max_junk_commands=2)
    codes = [line[:3] for line in rest.split(b"\r\n") if line]
    assert codes == [b"250", b"250", b"250", b"421"]
    assert len(writes) == 2  # HELO's, then the held replies with the 421
