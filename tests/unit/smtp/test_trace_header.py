"""A public listener's `Received:` line and TLS log lines, over real sockets and real TLS.

A `PvoqSMTP` listener on 127.0.0.1 or ::1 (an ephemeral port) with a handler
that keeps what `accept()` receives; clients speak to it with smtplib or raw
sockets.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import DEFAULT_CIPHERS, Listener
from pvoq.cpq.ca import CA_CERT_FILE, create_ca, issue_certificate
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp import replies
from pvoq.smtp.server import (
    BaseHandler,
    MessageInfo,
    PvoqEnvelope,
    PvoqSession,
    PvoqSMTP,
    ServerContext,
    start_listener,
)

HOSTNAME = "gw.example.test"
ACCEPT_ALL = "$ACCEPTED\n  ACCEPT {}\nALL\n  $ACCEPTED (everyone)\n"
MESSAGE = (b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hello\r\n"
           b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=s; b=abc\r\n"
           b"\r\nbody line\r\n.leading dot\r\nend\r\n")
STAMP = r"^\w{3} \w{3} {1,2}\d{1,2} \d\d:\d\d:\d\d \d{4} Info: "


class Keeping(BaseHandler):
    """Accepts every message and keeps its bytes."""

    commits_whole = True

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self.kept: list[bytes] = []

    async def accept(self, server: PvoqSMTP, session: PvoqSession, envelope: PvoqEnvelope,
                     content: bytes, info: MessageInfo) -> str:
        self.kept.append(content)
        return replies.accepted(envelope.mid)


@dataclass
class Running:
    port: int
    host: str
    handler: Keeping
    maillog: MailLog
    ca: Path

    def log(self) -> str:
        return self.maillog.path.read_text()  # written by the listener's thread, each turn

    def logged(self, pattern: str) -> str:
        """The log once *pattern* (a line's text, a regex) is in it; bounded wait."""
        deadline = time.monotonic() + 10
        while not re.search(STAMP + pattern, log := self.log(), re.M):
            assert time.monotonic() < deadline, log
            time.sleep(0.05)
        return log

    def client(self) -> smtplib.SMTP:
        return smtplib.SMTP(self.host, self.port, timeout=10)

    def client_tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.check_hostname = False
        return ctx


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("tls")
    create_ca(base / "ca")
    issued = issue_certificate(base / "ca", base / "gw", hostname=HOSTNAME, role="gateway",
                               addresses=["127.0.0.1"])
    return base / "ca" / CA_CERT_FILE, issued.certificate, issued.private_key


Serve = Callable[..., Iterator[Running]]


@pytest.fixture
def serve(tmp_path: Path, certificate: tuple[Path, Path, Path]) -> Iterator[Serve]:
    """Start a listener in a thread of its own; the test speaks to it as a client."""
    stops: list[Callable[[], None]] = []

    def start(host: str = "127.0.0.1", **changes: object) -> Running:
        ca, cert, key = certificate
        maillog = MailLog(tmp_path / f"logs{len(stops)}", appliance=f"gateway {HOSTNAME}",
                          serial="SN")
        context = ServerContext(maillog, IdAllocator(tmp_path / f"ids{len(stops)}.json"),
                                HOSTNAME)
        handler = Keeping(context)
        listener = replace(Listener(
            name="IncomingMail", protocol="SMTP", interface_name="Incoming Mail", port=0,
            listen_queue_size=50,
            type="public", hat=parse_hat(ACCEPT_ALL), rat=make_rat([("ALL", "ACCEPT", 0)])),
            **changes)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        tls.set_ciphers(DEFAULT_CIPHERS)
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        holder: dict[str, asyncio.AbstractServer] = {}

        async def bind() -> None:
            holder["server"] = await start_listener(listener, host, lambda: PvoqSMTP(
                handler, listener=listener, interface_ip=host, context=context,
                tls_context=tls))
            ready.set()

        thread = threading.Thread(target=lambda: (loop.run_until_complete(bind()),
                                                  loop.run_forever()), daemon=True)
        thread.start()
        assert ready.wait(10)
        port = holder["server"].sockets[0].getsockname()[1]

        def stop() -> None:
            loop.call_soon_threadsafe(holder["server"].close)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            maillog.flush()

        stops.append(stop)
        return Running(port, host, handler, maillog, ca)

    yield start  # type: ignore[misc]
    for stop in stops:
        stop()


def split_trace(content: bytes) -> tuple[str, bytes]:
    """(the first header field, unfolded; the bytes after it)."""
    match = re.match(rb"Received: (.*?\r\n)(?![ \t])", content, re.S)
    assert match is not None, content[:200]
    return match.group(1).decode("ascii")[:-2].replace("\r\n\t", " "), content[match.end():]


def test_one_received_line_on_top_and_the_rest_byte_identical(serve: Serve) -> None:
    s = serve()
    with s.client() as smtp:
        smtp.ehlo("client.example")
        smtp.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)
    (kept,) = s.handler.kept
    trace, rest = split_trace(kept)
    assert rest == MESSAGE
    assert re.fullmatch(rf"from client\.example \(unknown \[127\.0\.0\.1\]\) by {HOSTNAME} "
                        r"with ESMTP id (\d+) for <bob@example\.com>; \w{3}, \d\d \w{3} \d{4} "
                        r"\d\d:\d\d:\d\d [+-]\d{4}", trace), trace
    mid = re.search(r" id (\d+) ", trace).group(1)  # type: ignore[union-attr]
    # What is logged as received is what is kept, the trace line included.
    s.logged(rf"MID {mid} ready {len(kept)} bytes from <alice@example\.org>$")


def test_helo_hostile_and_two_recipients(serve: Serve) -> None:
    s = serve()
    with s.client() as smtp:
        smtp.helo("evil.example(x)\x1b")
        smtp.sendmail("alice@example.org", ["bob@example.com", "carol@example.com"], MESSAGE)
    trace, rest = split_trace(s.handler.kept[0])
    assert rest == MESSAGE
    assert trace.startswith(f"from evil.example?x? (unknown [127.0.0.1]) by {HOSTNAME} "
                            "with SMTP id ")
    assert " for " not in trace


def test_ipv6_client(serve: Serve) -> None:
    s = serve(host="::1")
    with s.client() as smtp:
        smtp.ehlo("v6.example")
        smtp.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)
    trace, _ = split_trace(s.handler.kept[0])
    assert trace.startswith("from v6.example (unknown [IPv6:::1]) by ")


def test_starttls_gives_esmtps_and_logs_tls_success(serve: Serve) -> None:
    s = serve()
    with s.client() as smtp:
        smtp.ehlo("client.example")
        smtp.starttls(context=s.client_tls())
        smtp.ehlo("client.example")
        cipher = smtp.sock.cipher()  # type: ignore[union-attr]
        smtp.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)
    trace, rest = split_trace(s.handler.kept[0])
    assert rest == MESSAGE
    protocol, name = cipher[1], cipher[0]
    assert (f"(unknown [127.0.0.1]) (using {protocol} with cipher {name} ({cipher[2]} bits)) "
            f"by {HOSTNAME} with ESMTPS id ") in trace
    s.logged(rf"ICID \d+ TLS success protocol {re.escape(protocol)} cipher {re.escape(name)}$")


def test_failed_handshake_is_logged_tls_failed(serve: Serve) -> None:
    s = serve()
    with socket.create_connection((s.host, s.port), timeout=10) as sock:
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"220")
        sock.sendall(b"EHLO client.example\r\n")
        while stream.readline()[3:4] == b"-":
            pass
        sock.sendall(b"STARTTLS\r\n")
        assert stream.readline().startswith(b"220")
        sock.sendall(b"this is not a TLS ClientHello\r\n" * 4)
        stream.read()  # until the listener closes
    log = s.logged(r"ICID \d+ close$")
    assert re.search(STAMP + r"ICID \d+ TLS failed: WRONG_VERSION_NUMBER$", log, re.M), log
    assert "TLS success" not in log and "application fault" not in log


def test_the_size_limit_counts_the_trace_line(serve: Serve) -> None:
    """What is stored (trace line included) stays within max_message_size."""
    limit = 2000
    s = serve(max_message_size=limit)
    filler = b"x" * 70 + b"\r\n"
    with s.client() as smtp:
        smtp.ehlo("client.example")
        assert smtp.esmtp_features["size"] == str(limit)
        exact = MESSAGE + filler * ((limit - len(MESSAGE)) // len(filler))
        exact += b"y" * (limit - len(exact) - 2) + b"\r\n"
        assert len(exact) == limit
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("alice@example.org", ["bob@example.com"], exact)
        assert refused.value.smtp_code == 552
        smtp.rset()
        smaller = MESSAGE + filler * 10
        smtp.sendmail("alice@example.org", ["bob@example.com"], smaller)
    (kept,) = s.handler.kept
    assert split_trace(kept)[1] == smaller and len(kept) <= limit


def test_received_header_off_keeps_the_message_byte_identical(serve: Serve) -> None:
    s = serve(received_header=False)
    with s.client() as smtp:
        smtp.ehlo("client.example")
        smtp.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)
    assert s.handler.kept == [MESSAGE]


def test_a_client_leaving_during_the_handshake_is_a_tls_failure(serve: Serve) -> None:
    """Not an application fault: the TLS failed line, with what happened."""
    s = serve()
    with socket.create_connection((s.host, s.port), timeout=10) as sock:
        stream = sock.makefile("rb")
        assert stream.readline().startswith(b"220")
        sock.sendall(b"EHLO client.example\r\n")
        while stream.readline()[3:4] == b"-":
            pass
        sock.sendall(b"STARTTLS\r\n")
        assert stream.readline().startswith(b"220")
        stream.close()  # the socket's file too: only then does the connection close
    log = s.logged(r"ICID \d+ close$")
    assert re.search(STAMP + r"ICID \d+ TLS failed: connection closed during the handshake$",
                     log, re.M), log
    assert "application fault" not in log
