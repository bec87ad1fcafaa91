"""Tests for pvoq.cpq.server: a `cpq_listener` session over real sockets and real TLS.

A `CpqSMTP` listener with a handler that records what `store()` receives runs
on 127.0.0.1 (an ephemeral port); clients speak to it with aiosmtplib,
presenting certificates issued by `pvoq.cpq.ca`.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from cpqhelpers import GATEWAY, MANAGER, RELAY_LOCALHOST, issue_pair

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import DEFAULT_CIPHERS, CpqCertificate, Listener
from pvoq.cpq import replies as cpq_replies
from pvoq.cpq.ca import CA_CERT_FILE, create_ca, issue_certificate
from pvoq.cpq.metadata import CHUNK_CHARS, KIND_QUARANTINE, MAX_CHUNKS, VERSION, encode_chunks
from pvoq.cpq.server import CpqHandler, CpqSMTP
from pvoq.cpq.tls import client_context, server_context
from pvoq.cpq.transfer import Transfer
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.server import MessageInfo, PvoqEnvelope, PvoqSession, ServerContext, start_listener

MESSAGE = (b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: confidential\r\n"
           b"Message-ID: <m1@example.org>\r\n\r\nquarterly figures\r\n")


def quarantine_meta(reason: str = "content filter:confidential_subject") -> dict[str, Any]:
    return {"v": VERSION, "kind": KIND_QUARANTINE, "transfer_id": "gw1-SN-000042-abcdef",
            "origin": {"hostname": GATEWAY, "serial": "GW1-SN", "mid": 42},
            "sender": "alice@example.org",
            "recipients": [{"rid": 0, "address": "bob@example.com"}],
            "quarantines": [{"name": "Policy", "reason": reason, "stage": "content_filters"}],
            "received": 1700000000.5, "size": len(MESSAGE)}


@dataclass(frozen=True)
class Certificates:
    gateway: CpqCertificate
    manager: CpqCertificate


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    base = tmp_path_factory.mktemp("cpq-ca")
    return Certificates(**issue_pair(base))


@dataclass
class Stored:
    mail_from: str
    rcpt_tos: list[str]
    meta: dict[str, Any]
    content: bytes
    subject: str
    peer: str | None


class RecordingHandler(CpqHandler):
    """A CPQ handler that keeps what `store()` receives and accepts it."""

    commits_whole = True

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self.stored: list[Stored] = []
        self.problems: list[str] = []

    def readiness(self, session: PvoqSession) -> list[str]:
        return list(self.problems)

    async def store(self, session: PvoqSession, envelope: PvoqEnvelope, transfer: Transfer,
                    content: bytes, info: MessageInfo) -> str:
        peer = session.peer_certificate
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        self.stored.append(Stored(str(envelope.mail_from), list(envelope.rcpt_tos),
                                  transfer.to_json(), content, info.subject,
                                  subject.get("commonName")))
        return f"250 2.0.0 Ok: quarantined as {len(self.stored)}"


@dataclass
class Listening:
    port: int
    handler: RecordingHandler
    maillog: MailLog
    certs: Certificates

    def log(self) -> str:
        self.maillog.flush()
        return self.maillog.path.read_text()

    def client_tls(self, cert: CpqCertificate | None) -> ssl.SSLContext:
        if cert is not None:
            return client_context(cert, ciphers=DEFAULT_CIPHERS)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cafile=str(self.certs.manager.ca_certificate))
        return ctx

    async def connect(self, *, tls: bool = True, cert: CpqCertificate | None = None,
                      ) -> aiosmtplib.SMTP:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port, start_tls=False,
                               timeout=10)
        await smtp.connect()
        await smtp.ehlo(hostname="gw1.example.com")
        if tls:
            await smtp.starttls(tls_context=self.client_tls(cert or self.certs.gateway))
            await smtp.ehlo(hostname="gw1.example.com")
        return smtp


Scenario = Callable[[Listening], Awaitable[None]]


async def serve(tmp_path: Path, certs: Certificates, scenario: Scenario,
                session: type[CpqSMTP] = CpqSMTP) -> None:
    maillog = MailLog(tmp_path / "logs", appliance=f"manager {MANAGER}", serial="MGR-SN")
    context = ServerContext(maillog, IdAllocator(tmp_path / "ids.json"), MANAGER)
    handler = RecordingHandler(context)
    listener = Listener(name="cpq_listener", protocol="CPQ", interface_name="Management",
                        port=0, listen_queue_size=50, type="private",
                        hat=parse_hat(RELAY_LOCALHOST), rat=make_rat([("ALL", "ACCEPT", 0)]))
    tls = server_context(certs.manager, ciphers=DEFAULT_CIPHERS)
    server = await start_listener(listener, "127.0.0.1", lambda: session(
        handler, listener=listener, interface_ip="127.0.0.1", context=context,
        tls_context=tls))
    port = server.sockets[0].getsockname()[1]
    try:
        await scenario(Listening(port, handler, maillog, certs))
    finally:
        server.close()
        await server.wait_closed()
        maillog.flush()  # not closed: sessions may still log their close


@pytest.fixture
def run(tmp_path: Path, certs: Certificates) -> Callable[[Scenario], None]:
    def runner(scenario: Scenario) -> None:
        asyncio.run(serve(tmp_path, certs, scenario))
    return runner


async def command(smtp: aiosmtplib.SMTP, line: str) -> tuple[int, str]:
    response = await smtp.execute_command(line.encode("ascii"))
    return response.code, response.message


async def transaction(smtp: aiosmtplib.SMTP, meta_lines: list[str],
                      body: bytes = MESSAGE) -> tuple[int, str]:
    """MAIL, RCPT, the given XCPQ lines, DATA; the DATA reply (or the first refusal)."""
    await smtp.mail("alice@example.org")
    await smtp.rcpt("bob@example.com")
    for line in meta_lines:
        code, text = await command(smtp, line)
        if code != 250:
            return code, text
    try:
        response = await smtp.data(body)
    except aiosmtplib.SMTPDataError as exc:
        return exc.code, exc.message
    return response.code, response.message


def test_no_xcpq_before_starttls_and_mail_refused_with_530(run: Any) -> None:
    async def scenario(s: Listening) -> None:
        smtp = await s.connect(tls=False)
        assert smtp.supports_extension("starttls")
        assert not smtp.supports_extension("xcpq")
        code, text = await command(smtp, "MAIL FROM:<alice@example.org>")
        assert code == 530
        assert "STARTTLS" in text
        code, _ = await command(smtp, "XCPQ CHECK")
        assert code == 530
        await smtp.quit()
        assert s.handler.stored == []
    run(scenario)


def test_xcpq_offered_after_starttls(run: Any) -> None:
    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        assert smtp.supports_extension("xcpq")
        assert smtp.esmtp_extensions["xcpq"] == str(VERSION)
        assert cpq_replies.XCPQ_KEYWORD.text in smtp.last_ehlo_response.message.splitlines()
        await smtp.quit()
    run(scenario)


def test_transfer_with_metadata_is_stored(run: Any) -> None:
    meta = quarantine_meta(reason="x" * (2 * CHUNK_CHARS))  # several chunks
    chunks = encode_chunks(meta)
    assert len(chunks) > 2

    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        await smtp.mail("alice@example.org")
        await smtp.rcpt("bob@example.com")
        for n, chunk in enumerate(chunks, 1):
            assert await command(smtp, f"XCPQ META {chunk}") == (
                250, f"2.0.0 Metadata chunk {n} accepted")
        response = await smtp.data(MESSAGE)
        assert (response.code, response.message) == (250, "2.0.0 Ok: quarantined as 1")
        await smtp.quit()
        (stored,) = s.handler.stored
        assert stored.meta == meta
        assert stored.content == MESSAGE
        assert stored.mail_from == "alice@example.org"
        assert stored.rcpt_tos == ["bob@example.com"]
        assert stored.subject == "confidential"
        assert stored.peer == GATEWAY
        assert re.search(rf"ICID \d+ TLS success protocol TLSv1\.[23] cipher \S+ peer {GATEWAY}",
                         s.log())
    run(scenario)


def test_two_transfers_on_one_connection(run: Any) -> None:
    """Each transaction carries its own metadata; chunks do not leak into the next."""
    first, second = quarantine_meta("first"), quarantine_meta("second")

    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        for meta in (first, second):
            lines = [f"XCPQ META {c}" for c in encode_chunks(meta)]
            assert (await transaction(smtp, lines))[0] == 250
        await smtp.quit()
        assert [x.meta for x in s.handler.stored] == [first, second]
    run(scenario)


def test_rset_forgets_the_chunks(run: Any) -> None:
    meta = quarantine_meta()

    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        await smtp.mail("alice@example.org")
        await command(smtp, "XCPQ META " + encode_chunks(quarantine_meta("stale"))[0])
        await smtp.rset()
        lines = [f"XCPQ META {c}" for c in encode_chunks(meta)]
        assert (await transaction(smtp, lines))[0] == 250
        await smtp.quit()
        assert [x.meta for x in s.handler.stored] == [meta]
    run(scenario)


def test_meta_before_mail_is_503(run: Any) -> None:
    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        assert await command(smtp, "XCPQ META " + encode_chunks(quarantine_meta())[0]) == \
            cpq_replies.META_NEEDS_MAIL
        await smtp.quit()
    run(scenario)


def test_meta_without_a_chunk_is_501(run: Any) -> None:
    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        await smtp.mail("alice@example.org")
        assert await command(smtp, "XCPQ META") == cpq_replies.META_SYNTAX
        await smtp.quit()
    run(scenario)


def test_unknown_xcpq_verb_is_501(run: Any) -> None:
    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        code, text = await command(smtp, "XCPQ FROB")
        assert (code, text) == cpq_replies.XCPQ_SYNTAX
        await smtp.quit()
    run(scenario)


def test_data_without_metadata_is_refused(run: Any) -> None:
    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        code, text = await transaction(smtp, [])
        assert (code, text) == (
            554, "5.6.0 CPQ metadata refused: no XCPQ META was sent in this transaction")
        # the transaction is over: a new one can start on the same connection
        lines = [f"XCPQ META {c}" for c in encode_chunks(quarantine_meta())]
        assert (await transaction(smtp, lines))[0] == 250
        await smtp.quit()
        assert len(s.handler.stored) == 1
        assert "CPQ metadata refused: no XCPQ META was sent" in s.log()
    run(scenario)


@pytest.mark.parametrize(("chunk", "why"), [
    ("not*base64", "undecodable metadata"),
    (encode_chunks({"v": VERSION})[0], "missing field kind"),
    (encode_chunks({**quarantine_meta(), "v": 2})[0], "unsupported metadata version 2"),
])
def test_bad_metadata_is_refused_at_data(run: Any, chunk: str, why: str) -> None:
    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        code, text = await transaction(smtp, [f"XCPQ META {chunk}"])
        assert code == cpq_replies.METADATA_REFUSED.code
        assert text.startswith(cpq_replies.METADATA_REFUSED.text.format(reason=""))
        assert why in text
        await smtp.quit()
        assert s.handler.stored == []
    run(scenario)


def test_too_many_chunks_is_552(run: Any) -> None:
    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        await smtp.mail("alice@example.org")
        for _ in range(MAX_CHUNKS):
            code, _ = await command(smtp, "XCPQ META QUFB")
            assert code == 250
        assert await command(smtp, "XCPQ META QUFB") == cpq_replies.TOO_MUCH_METADATA
        await smtp.quit()
    run(scenario)


def test_check_ready(run: Any) -> None:
    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        code, text = await command(smtp, "XCPQ CHECK")
        assert f"{code} {text}" == cpq_replies.READY.format(peer=GATEWAY)
        await smtp.quit()
        assert f"CPQ readiness check for {GATEWAY}: ready" in s.log()
    run(scenario)


def test_check_not_ready_names_the_problems(run: Any) -> None:
    async def scenario(s: Listening) -> None:
        s.handler.problems = ["gateway gw1.example.com is not configured", "disk full"]
        smtp = await s.connect()
        code, text = await command(smtp, "XCPQ CHECK")
        assert f"{code} {text}" == cpq_replies.NOT_READY.format(
            problems="gateway gw1.example.com is not configured; disk full")
        await smtp.quit()
        assert f"CPQ readiness check for {GATEWAY}: not ready: " in s.log()
    run(scenario)


def test_peer_without_a_certificate_is_refused(run: Any) -> None:
    async def scenario(s: Listening) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=s.port, start_tls=False, timeout=10)
        await smtp.connect()
        await smtp.ehlo(hostname="nocert.example")
        await smtp.starttls(tls_context=s.client_tls(None))
        code, _ = await command(smtp, "EHLO nocert.example")
        assert code == 554
        code, _ = await command(smtp, "MAIL FROM:<alice@example.org>")
        assert code == 554
        smtp.close()
        assert s.handler.stored == []
        assert "TLS failed: verify error: no certificate from client" in s.log()
    run(scenario)


def test_peer_from_another_ca_fails_the_handshake(
        run: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("rogue")
    create_ca(base / "ca")
    issued = issue_certificate(base / "ca", base / "gw", hostname=GATEWAY, role="gateway")
    rogue = CpqCertificate(base / "ca" / CA_CERT_FILE, issued.certificate, issued.private_key)

    async def scenario(s: Listening) -> None:
        ctx = client_context(rogue, ciphers=DEFAULT_CIPHERS)
        ctx.load_verify_locations(cafile=str(s.certs.manager.ca_certificate))
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=s.port, start_tls=False, timeout=10)
        await smtp.connect()
        await smtp.ehlo(hostname="rogue.example")
        with pytest.raises((aiosmtplib.SMTPException, ssl.SSLError, ConnectionError)):
            await smtp.starttls(tls_context=ctx)
            await smtp.ehlo(hostname="rogue.example")
            await smtp.mail("alice@example.org")
        smtp.close()
        assert s.handler.stored == []
    run(scenario)


def _raw_chunks(raw: bytes) -> list[str]:
    text = base64.b64encode(raw).decode("ascii")
    return [text[i:i + CHUNK_CHARS] for i in range(0, len(text), CHUNK_CHARS)]


def _meta_with(**fields: Any) -> list[str]:
    return encode_chunks({**quarantine_meta(), **fields})


HOSTILE_METADATA = {
    "deep": (_raw_chunks(b"[" * 100_000 + b"]" * 100_000), "nested deeper than"),
    "huge mid": (_meta_with(origin={"hostname": GATEWAY, "serial": "GW1-SN", "mid": 2**70}),
                 "field origin.mid is out of range"),
    "nan": (_meta_with(received=float("nan")), "metadata holds NaN"),
    "infinity": (_meta_with(received=float("inf")), "metadata holds Infinity"),
    "long sender": (_meta_with(sender="a" * 60 + "@" + "b" * 4940 + ".org"),
                    "field sender is longer than 254 octets"),
    "recipients": (_meta_with(recipients=[{"rid": i, "address": f"u{i}@example.com"}
                                          for i in range(1001)]),
                   "field recipients has more than 1000 items"),
    "non-ascii kind": (_meta_with(kind="qüarantine" * 100), "unknown kind 'q\\xfcarantine"),
}


@pytest.mark.parametrize("case", HOSTILE_METADATA)
def test_metadata_that_can_never_succeed_is_554_before_354(
        run: Any, tmp_path: Path, case: str) -> None:
    """DATA answers 554 at once (never 354, never 451): no body is read, nothing is left."""
    chunks, why = HOSTILE_METADATA[case]
    assert len(chunks) <= MAX_CHUNKS
    before = sorted(p.name for p in tmp_path.iterdir())

    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        await smtp.mail("alice@example.org")
        await smtp.rcpt("bob@example.com")
        for chunk in chunks:
            assert (await command(smtp, f"XCPQ META {chunk}"))[0] == 250
        code, text = await command(smtp, "DATA")
        assert code == 554
        assert text.startswith("5.6.0 CPQ metadata refused: ")
        assert why in text
        assert len(text) < 300
        # the session goes on: a good transfer is taken on the same connection
        lines = [f"XCPQ META {c}" for c in encode_chunks(quarantine_meta())]
        assert (await transaction(smtp, lines))[0] == 250
        await smtp.quit()
        assert len(s.handler.stored) == 1
        log = s.log()
        assert "application fault" not in log
        assert "CPQ metadata refused: " in log

    run(scenario)
    after = sorted(p.name for p in tmp_path.iterdir())
    assert set(after) - set(before) <= {"logs", "ids.json"}


def test_a_listener_takes_at_most_1000_recipients_per_message(run: Any) -> None:
    """What a listener takes, CPQ metadata can carry: the 1,001st recipient gets 452."""
    async def scenario(s: Listening) -> None:
        smtp = await s.connect()
        await smtp.mail("alice@example.org")
        for i in range(1000):
            assert (await command(smtp, f"RCPT TO:<u{i}@example.com>"))[0] == 250
        code, text = await command(smtp, "RCPT TO:<u1000@example.com>")
        assert (code, text) == (452, "4.5.3 Too many recipients")
        await smtp.quit()
        assert "1000 recipients per message reached" in s.log()
    run(scenario)


class WriteCountingSMTP(CpqSMTP):
    """A `CpqSMTP` that records each write of its transport (one list for the listener)."""

    writes: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # again after STARTTLS: wrap the writer once
        writer = self._writer
        if getattr(writer, "counted", False):
            return
        writer.counted = True  # type: ignore[attr-defined]
        real = writer.write

        def write(data: bytes) -> None:
            self.writes.append(bytes(data))
            real(data)

        writer.write = write  # type: ignore[method-assign]


def test_the_replies_of_a_pipelined_transfer_leave_in_one_write(
        tmp_path: Path, certs: Certificates) -> None:
    """pvoq's CPQ sender, sending by DATA (a message too large for one BDAT write, or a
    peer without CHUNKING), pipelines MAIL, RCPT, the XCPQ META lines and DATA in one
    write; their replies (250s then 354) leave in one write too, in order, and the
    transfer's final 250 after its own."""
    from pvoq.cpq.client import CpqConnection
    from pvoq.smtp.client import TlsPolicy

    meta = quarantine_meta(reason="y" * (2 * CHUNK_CHARS))  # several chunks
    lines = [f"XCPQ META {c}" for c in encode_chunks(meta)]
    writes: list[bytes] = []
    WriteCountingSMTP.writes = writes

    async def scenario(at: Listening) -> None:
        client_log = MailLog(tmp_path / "client-logs", appliance="gateway", serial="GW-SN")
        conn = CpqConnection(expect_role="manager", maillog=client_log,
                             ids=IdAllocator(tmp_path / "client-ids.json"),
                             local_hostname=GATEWAY, label="the.cpq.host",
                             tls=TlsPolicy(client_context(certs.gateway,
                                                          ciphers=DEFAULT_CIPHERS),
                                           required=True), timeout_s=10,
                             pipeline_transactions=False)
        try:
            await conn.open("127.0.0.1", at.port)
            writes.clear()  # the greeting, EHLO and STARTTLS are not the point
            result = await conn.send(mid=1, sender="alice@example.org",
                                     recipients=[(0, "bob@example.com")], body=MESSAGE,
                                     extra=lines)
            assert result[0].ok, result
            await conn.close()
        finally:
            client_log.close()
        assert len(at.handler.stored) == 1 and at.handler.stored[0].meta == meta

    asyncio.run(serve(tmp_path, certs, scenario, WriteCountingSMTP))
    group = [w for w in writes if b"354 " in w]
    assert len(group) == 1, writes
    replies = group[0].split(b"\r\n")[:-1]
    assert [r[:4] for r in replies] == [b"250 "] * (2 + len(lines)) + [b"354 "], replies
    assert replies[2].startswith(b"250 2.0.0 Metadata chunk 1 accepted")
    assert writes[writes.index(group[0]) + 1].startswith(b"250 2.0.0 Ok: quarantined as 1")
