"""Tests for pvoq.cpq.client: `CpqDestination` sending transfers over real TLS.

A CPQ listener (`CpqSMTP` with a handler that records what `store()`
receives) runs on 127.0.0.1; the destination connects to it with a
certificate issued by `pvoq.cpq.ca`, checks the peer's role and name, and
sends the entry's metadata as `XCPQ META` chunks between RCPT and DATA.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cpqhelpers import GATEWAY, MANAGER, RELAY_LOCALHOST, issue_pair

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import DEFAULT_CIPHERS, CpqCertificate, Listener
from pvoq.cpq.client import DONE_NOTE, START_NOTE, CpqDestination
from pvoq.cpq.metadata import CHUNK_CHARS, KIND_QUARANTINE, VERSION, encode_chunks
from pvoq.cpq.server import CpqHandler, CpqSMTP
from pvoq.cpq.tls import client_context, server_context
from pvoq.cpq.transfer import Transfer
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.client import DeliveryError
from pvoq.smtp.server import (
    BaseHandler,
    MessageInfo,
    PvoqEnvelope,
    PvoqSession,
    PvoqSMTP,
    ServerContext,
    start_listener,
)
from pvoq.spool.store import Entry, Recipient

MESSAGE = (b"From: alice@example.org\r\nTo: bob@example.com, carol@example.com\r\n"
           b"Subject: confidential\r\n\r\nquarterly figures\r\n")


def quarantine_meta(reason: str = "content filter:confidential_subject") -> dict[str, Any]:
    return {"v": VERSION, "kind": KIND_QUARANTINE, "transfer_id": "gw1-SN-000042-abcdef",
            "origin": {"hostname": GATEWAY, "serial": "GW1-SN", "mid": 42},
            "sender": "alice@example.org",
            "recipients": [{"rid": 0, "address": "bob@example.com"},
                           {"rid": 1, "address": "carol@example.com"}],
            "quarantines": [{"name": "Policy", "reason": reason, "stage": "content_filters"}],
            "received": 1700000000.5, "size": len(MESSAGE)}


def entry(meta: dict[str, Any]) -> Entry:
    return Entry(mid=42, sender="alice@example.org",
                 recipients=[Recipient(0, "bob@example.com", "the.cpq.host"),
                             Recipient(1, "carol@example.com", "the.cpq.host")],
                 received=1700000000.5, size=len(MESSAGE), meta={"cpq": meta})


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CpqCertificate]:
    base = tmp_path_factory.mktemp("cpq-ca")
    return issue_pair(base)


class RecordingHandler(CpqHandler):
    """A CPQ handler that keeps the metadata and content `store()` receives."""

    commits_whole = True

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self.stored: list[tuple[dict[str, Any], bytes, list[str]]] = []

    async def store(self, session: PvoqSession, envelope: PvoqEnvelope, transfer: Transfer,
                    content: bytes, info: MessageInfo) -> str:
        self.stored.append((transfer.to_json(), content, list(envelope.rcpt_tos)))
        return "250 2.0.0 Ok: quarantined"


class PlainHandler(BaseHandler):
    """An SMTP server with STARTTLS and a CPQ certificate, but no XCPQ."""

    async def accept(self, server: PvoqSMTP, session: PvoqSession, envelope: PvoqEnvelope,
                     content: bytes, info: MessageInfo) -> str:
        return "250 2.0.0 Ok"


@dataclass
class Peer:
    port: int
    handler: BaseHandler
    gateway_log: MailLog
    destination: Callable[..., CpqDestination]

    def log(self) -> str:
        self.gateway_log.flush()
        return self.gateway_log.path.read_text()


Scenario = Callable[[Peer], Awaitable[None]]


async def serve(tmp_path: Path, certs: dict[str, CpqCertificate], scenario: Scenario, *,
                presents: str, cpq: bool) -> None:
    server_log = MailLog(tmp_path / "server-logs", appliance="peer", serial="PEER-SN")
    context = ServerContext(server_log, IdAllocator(tmp_path / "server-ids.json"), MANAGER)
    handler: BaseHandler = RecordingHandler(context) if cpq else PlainHandler(context)
    listener = Listener(name="cpq_listener", protocol="CPQ", interface_name="Management",
                        port=0, listen_queue_size=50, type="private",
                        hat=parse_hat(RELAY_LOCALHOST), rat=make_rat([("ALL", "ACCEPT", 0)]))
    tls = server_context(certs[presents], ciphers=DEFAULT_CIPHERS)
    protocol = CpqSMTP if cpq else PvoqSMTP
    extra: dict[str, Any] = {} if cpq else {"require_starttls": True}
    server = await start_listener(listener, "127.0.0.1", lambda: protocol(
        handler, listener=listener, interface_ip="127.0.0.1", context=context,
        tls_context=tls, **extra))
    port = server.sockets[0].getsockname()[1]
    gateway_log = MailLog(tmp_path / "gw-logs", appliance=f"gateway {GATEWAY}", serial="GW1")
    ids = IdAllocator(tmp_path / "gw-ids.json")
    client_tls: ssl.SSLContext = client_context(certs["gateway"], ciphers=DEFAULT_CIPHERS)

    def destination(**kwargs: Any) -> CpqDestination:
        settings: dict[str, Any] = dict(
            resolve=lambda e: ("127.0.0.1", port), expect_role="manager",
            expect_name=MANAGER, tls_context=client_tls, maillog=gateway_log, ids=ids,
            local_hostname=GATEWAY, source_ip=None, timeout_s=10.0)
        settings.update(kwargs)
        return CpqDestination("the.cpq.host", **settings)

    try:
        await scenario(Peer(port, handler, gateway_log, destination))
    finally:
        server.close()
        await server.wait_closed()
        server_log.flush()


@pytest.fixture
def run(tmp_path: Path, certs: dict[str, CpqCertificate]) -> Callable[..., None]:
    def runner(scenario: Scenario, *, presents: str = "manager", cpq: bool = True) -> None:
        asyncio.run(serve(tmp_path, certs, scenario, presents=presents, cpq=cpq))
    return runner


def test_target_carries_the_metadata_chunks() -> None:
    meta = quarantine_meta(reason="x" * (2 * CHUNK_CHARS))
    dest = CpqDestination("the.cpq.host", resolve=lambda e: ("192.0.2.7", 7025),
                          expect_role="manager", tls_context=ssl.create_default_context(),
                          maillog=None, ids=None, local_hostname=GATEWAY,  # type: ignore[arg-type]
                          source_ip=None, timeout_s=10.0)
    target = dest.target(entry(meta))
    assert target is not None
    assert (target.host, target.port) == ("192.0.2.7", 7025)
    assert list(target.extra) == [f"XCPQ META {c}" for c in encode_chunks(meta)]
    assert len(target.extra) > 2  # several chunks, in order
    assert (target.start_note, target.done_note) == (START_NOTE, DONE_NOTE)
    assert dest.holds_on_permanent_failure is True
    assert dest.expires is False


def test_each_direction_logs_its_own_notes() -> None:
    """To the manager: AsyncOS's "to Centralized Policy Quarantine"; back to a gateway,
    a release or a Send Copy says so."""
    dest = CpqDestination("the.cpq.release.host", resolve=lambda e: ("192.0.2.7", 7025),
                          expect_role="gateway", tls_context=ssl.create_default_context(),
                          maillog=None, ids=None, local_hostname=MANAGER,  # type: ignore[arg-type]
                          source_ip=None, timeout_s=10.0)
    release = {**quarantine_meta(), "kind": "release", "transfer_id": "r-MGR-SN-5",
               "release": {"entry": 5, "stages": ["content_filters"]}}
    copy = {**release, "release": {**release["release"], "copy_of": 3}}
    notes = {name: dest.target(entry(meta)) for name, meta in (
        ("quarantine", quarantine_meta()), ("release", release), ("copy", copy))}
    assert {name: (t.start_note, t.done_note) for name, t in notes.items() if t} == {
        "quarantine": ("to Centralized Policy Quarantine", "(centralized policy quarantine)"),
        "release": ("on release from Centralized Policy Quarantine",
                    "(release from centralized policy quarantine)"),
        "copy": ("as a copy from Centralized Policy Quarantine",
                 "(copy from centralized policy quarantine)")}


def test_no_target_while_the_address_is_unknown() -> None:
    dest = CpqDestination("the.cpq.release.host", resolve=lambda e: None, expect_role="gateway",
                          tls_context=ssl.create_default_context(), maillog=None,  # type: ignore[arg-type]
                          ids=None, local_hostname=MANAGER,  # type: ignore[arg-type]
                          source_ip=None, timeout_s=10.0)
    assert dest.target(entry(quarantine_meta())) is None


def test_transfer_sent_with_its_metadata(run: Any) -> None:
    meta = quarantine_meta(reason="y" * (2 * CHUNK_CHARS))

    async def scenario(p: Peer) -> None:
        dest = p.destination()
        queued = entry(meta)
        target = dest.target(queued)
        assert target is not None
        conn = dest.connection()
        await conn.open(target.host, target.port)
        replies = await conn.send(mid=queued.mid, sender=queued.sender,
                                  recipients=[(r.rid, r.address) for r in queued.recipients],
                                  body=MESSAGE, extra=target.extra,
                                  start_note=target.start_note, done_note=target.done_note)
        await conn.close()
        assert {rid: (r.code, r.text) for rid, r in replies.items()} == {
            0: (250, "2.0.0 Ok: quarantined"), 1: (250, "2.0.0 Ok: quarantined")}
        assert isinstance(p.handler, RecordingHandler)
        assert p.handler.stored == [(meta, MESSAGE, ["bob@example.com", "carol@example.com"])]
        log = p.log()
        assert re.search(r"DCID \d+ TLS success protocol \S+ cipher \S+ the\.cpq\.host", log)
        assert re.search(rf"Delivery start DCID \d+ MID 42 to RID \[0, 1\] {START_NOTE}", log)
        assert re.search(rf"Message done DCID \d+ MID 42 to RID \[0, 1\] "
                         rf"{re.escape(DONE_NOTE)}", log)
    run(scenario)


def test_peer_name_compared_without_case(run: Any) -> None:
    async def scenario(p: Peer) -> None:
        conn = p.destination(expect_name=MANAGER.upper()).connection()
        await conn.open("127.0.0.1", p.port)
        assert conn.supports("xcpq")
        await conn.close()
    run(scenario)


def test_any_name_when_none_is_expected(run: Any) -> None:
    async def scenario(p: Peer) -> None:
        conn = p.destination(expect_name=None).connection()
        await conn.open("127.0.0.1", p.port)
        await conn.close()
    run(scenario)


def test_peer_with_another_name_is_refused(run: Any) -> None:
    async def scenario(p: Peer) -> None:
        conn = p.destination(expect_name="other-mgr.example.com").connection()
        with pytest.raises(DeliveryError, match=f"is '{MANAGER}', not other-mgr.example.com"):
            await conn.open("127.0.0.1", p.port)
        assert "expected 'other-mgr.example.com'" in p.log()
        assert not conn.supports("xcpq")  # closed
    run(scenario)


def test_peer_of_another_role_is_refused(run: Any) -> None:
    """A gateway certificate where a manager is expected: the mail stays queued."""
    async def scenario(p: Peer) -> None:
        conn = p.destination(expect_name=None).connection()
        with pytest.raises(DeliveryError, match="is not a manager") as caught:
            await conn.open("127.0.0.1", p.port)
        assert caught.value.temporary
        assert "certificate is for role 'gateway', expected 'manager'" in p.log()
        assert isinstance(p.handler, RecordingHandler)
        assert p.handler.stored == []
    run(scenario, presents="gateway")


def test_peer_without_xcpq_is_refused(run: Any) -> None:
    async def scenario(p: Peer) -> None:
        conn = p.destination().connection()
        with pytest.raises(DeliveryError, match="does not speak CPQ"):
            await conn.open("127.0.0.1", p.port)
        assert "CPQ peer does not offer XCPQ" in p.log()
    run(scenario, cpq=False)
