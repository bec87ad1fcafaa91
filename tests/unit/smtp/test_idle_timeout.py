"""The idle timeout of an SMTP session (aiosmtpd's, per command): each command starts it
again, and a session that stays silent for longer is closed.

The timer is no longer replaced at every command (`LimitedSMTP._reset_timeout` moves a
deadline; the one timer waits again when it fires early): a session whose commands
come more often than the timeout, for longer than it in all, stays open; silence ends it.
Real sockets on 127.0.0.1; every wait bounded.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import Listener
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.server import BaseHandler, PvoqSMTP, ServerContext, start_listener

ACCEPT_ALL = "$ACCEPTED\n  ACCEPT {}\nALL\n  $ACCEPTED (everyone)\n"
TIMEOUT_S = 2.0


def test_commands_keep_a_session_open_and_silence_closes_it(tmp_path: Path) -> None:
    maillog = MailLog(tmp_path / "logs", appliance="gateway gw.example.test", serial="SN")
    context = ServerContext(maillog, IdAllocator(tmp_path / "ids.json"), "gw.example.test")
    listener = replace(Listener(
        name="IncomingMail", protocol="SMTP", interface_name="Incoming Mail", port=0,
        listen_queue_size=50, type="public", hat=parse_hat(ACCEPT_ALL),
        rat=make_rat([("ALL", "ACCEPT", 0)])), timeout_seconds=TIMEOUT_S)
    handler = BaseHandler(context)

    async def scenario() -> tuple[list[bytes], bytes]:
        server = await start_listener(listener, "127.0.0.1", lambda: PvoqSMTP(
            handler, listener=listener, interface_ip="127.0.0.1", context=context))
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            replies = [await asyncio.wait_for(reader.readline(), 10)]
            # Five commands 0.4 timeouts apart: two timeouts in all, never one of silence.
            for _ in range(5):
                await asyncio.sleep(TIMEOUT_S * 0.4)
                writer.write(b"HELO client.example\r\n")
                replies.append(await asyncio.wait_for(reader.readline(), 10))
            # Then silence: the server closes the connection (bounded wait).
            rest = await asyncio.wait_for(reader.read(), TIMEOUT_S * 10)
            writer.close()
            return replies, rest
        finally:
            server.close()
            await server.wait_closed()

    try:
        replies, rest = asyncio.run(scenario())
    finally:
        maillog.close()
    assert replies[0].startswith(b"220 ")
    assert [r[:4] for r in replies[1:]] == [b"250 "] * 5
    assert rest == b""  # closed by the server, nothing said
