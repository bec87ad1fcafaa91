"""STARTTLS on a server session, on both event loops an appliance may run.

The handshake is the event loop's own (`loop.start_tls`: uvloop's compiled TLS, not
the standard library's Python layer aiosmtpd builds), and afterwards the session is what
aiosmtpd made it: SMTP state started again, the plaintext sent after STARTTLS thrown
away, what the client sends at once after the handshake kept, STARTTLS no longer
offered, the `TLS success` line; a failed handshake logs `TLS failed` and one `ICID
close`. Real sockets on 127.0.0.1, real TLS (a deployment CA's certificates); every
wait bounded.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import DEFAULT_CIPHERS, Listener
from pvoq.cpq.tls import client_context, server_context
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.server import BaseHandler, PvoqSMTP, ServerContext, start_listener
from pvoq.testing.cpqlink import LOOPS, issue_pair
from pvoq.testing.cpqlink import MANAGER as SERVER

ACCEPT_ALL = "$ACCEPTED\n  ACCEPT {}\nALL\n  $ACCEPTED (everyone)\n"
WAIT_S = 20.0

Talk = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Any, list[PvoqSMTP]],
                Awaitable[Any]]


def run(tmp_path: Path, loop: str, talk: Talk) -> tuple[Any, list[PvoqSMTP], str]:
    """*talk(reader, writer, client TLS context, sessions)* against a listener offering STARTTLS;
    its result, the sessions and the server's mail_logs."""
    certs = issue_pair(tmp_path / "pki")  # the server's is "manager", for SERVER
    maillog = MailLog(tmp_path / "logs", appliance="gateway gw.example.test", serial="SN")
    context = ServerContext(maillog, IdAllocator(tmp_path / "ids.json"), SERVER)
    listener = Listener(
        name="IncomingMail", protocol="SMTP", interface_name="Incoming Mail", port=0,
        listen_queue_size=50, type="public", hat=parse_hat(ACCEPT_ALL),
        rat=make_rat([("ALL", "ACCEPT", 0)]))
    handler = BaseHandler(context)
    sessions: list[PvoqSMTP] = []
    tls = server_context(certs["manager"], ciphers=DEFAULT_CIPHERS)

    def session() -> PvoqSMTP:
        smtp = PvoqSMTP(handler, listener=listener, interface_ip="127.0.0.1", context=context,
                        tls_context=tls)
        sessions.append(smtp)
        return smtp

    async def scenario() -> Any:
        server = await start_listener(listener, "127.0.0.1", session)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                return await talk(reader, writer, client_context(
                    certs["gateway"], ciphers=DEFAULT_CIPHERS), sessions)
            finally:
                writer.close()
                await asyncio.sleep(0.2)  # the server sees the close
        finally:
            server.close()
            await server.wait_closed()

    try:
        with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
            result = runner.run(asyncio.wait_for(scenario(), WAIT_S))
        maillog.flush()
        return result, sessions, maillog.path.read_text()
    finally:
        maillog.close()


async def reply(reader: asyncio.StreamReader) -> list[bytes]:
    """One whole reply, its lines."""
    lines = []
    while True:
        line = await reader.readline()
        assert line, f"the server closed after {lines}"
        lines.append(line)
        if line[3:4] != b"-":
            return lines


@pytest.mark.parametrize("loop", list(LOOPS))
def test_a_session_goes_on_over_tls(tmp_path: Path, loop: str) -> None:
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: Any,
                   sessions: list[PvoqSMTP]) -> tuple[list[bytes], list[bytes], list[bytes], str]:
        await reply(reader)
        writer.write(b"EHLO client.example\r\n")
        before = await reply(reader)
        # A NOOP injected after STARTTLS in plaintext must never be answered.
        writer.write(b"STARTTLS\r\nNOOP\r\n")
        ready = await reply(reader)
        await writer.start_tls(tls, server_hostname=SERVER)
        writer.write(b"EHLO client.example\r\n")  # at once after the handshake
        after = await reply(reader)
        layer = type(sessions[0].transport).__module__  # the server's TLS transport
        writer.write(b"QUIT\r\n")
        return before, ready + after, await reply(reader), layer

    (before, after, bye, layer), _, log = run(tmp_path, loop, talk)
    assert any(b"STARTTLS" in line for line in before)
    assert after[0].startswith(b"220 ")
    assert after[1].startswith(b"250-") and not any(b"STARTTLS" in line for line in after)
    assert bye[0].startswith(b"221 ")
    assert re.search(r"ICID \d+ TLS success protocol TLSv1\.3 cipher \S+", log), log
    assert len(re.findall(r"ICID \d+ close", log)) == 1
    # The loop's own TLS: uvloop's compiled one, not the standard library's Python layer.
    assert layer == ("uvloop.loop" if loop == "uvloop" else "asyncio.sslproto"), layer


@pytest.mark.parametrize("loop", list(LOOPS))
def test_a_failed_handshake_is_logged_and_closed(tmp_path: Path, loop: str) -> None:
    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: Any,
                   sessions: list[PvoqSMTP]) -> bytes:
        await reply(reader)
        writer.write(b"EHLO client.example\r\n")
        await reply(reader)
        writer.write(b"STARTTLS\r\n")
        await reply(reader)
        writer.write(b"this is not a TLS client hello\r\n" * 4)
        return await reader.read()  # until the server closes

    rest, _, log = run(tmp_path, loop, talk)
    assert b"250 " not in rest and b"220 " not in rest
    assert re.search(r"ICID \d+ TLS failed: \S", log), log
    assert len(re.findall(r"ICID \d+ close", log)) == 1
