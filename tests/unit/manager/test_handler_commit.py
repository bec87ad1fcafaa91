"""The manager's `cpq_listener` with group commit, over real sockets and real TLS.

A real `CpqSMTP` listener with the manager's `QuarantineHandler` over a real
SQLite store on 127.0.0.1; four gateway connections ship transfers at once.
When the batch's commit fails every one of them hears 451 and nothing is
left behind; sent again, each is stored once and acknowledged with 250.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiosmtplib
import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.exc import OperationalError
from test_releases import Rig, transfer_meta

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import DEFAULT_CIPHERS, Config, CpqCertificate, Listener
from pvoq.cpq.ca import CA_CERT_FILE, create_ca, issue_certificate
from pvoq.cpq.metadata import encode_chunks
from pvoq.cpq.server import CpqSMTP
from pvoq.cpq.tls import client_context, server_context
from pvoq.manager.handler import QuarantineHandler
from pvoq.quarantine.arrivals import INLINE_BODY_MAX
from pvoq.quarantine.schema import message_bodies, messages
from pvoq.smtp.server import ServerContext, start_listener

GATEWAY = "gw1.example.com"
HAT = ("$RELAYED\n  RELAY {}\nRELAYLIST:\n  127.0.0.1\n    $RELAYED (the gateway)\n"
       "ALL\n  $RELAYED (Everyone)\n")
SENDERS = 4


def certificates(base: Path) -> dict[str, CpqCertificate]:
    create_ca(base / "ca")
    made = {}
    for hostname, role in ((GATEWAY, "gateway"), ("mgr.example.com", "manager")):
        issued = issue_certificate(base / "ca", base / role, hostname=hostname, role=role,
                                   addresses=["127.0.0.1"])
        made[role] = CpqCertificate(base / "ca" / CA_CERT_FILE, issued.certificate,
                                    issued.private_key)
    return made


def body(i: int) -> bytes:
    return (f"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: batch {i}\r\n\r\n"
            f"figures {i}\r\n").encode()


async def ship(port: int, cert: CpqCertificate, meta: dict[str, Any], i: int) -> int:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
    await smtp.connect()
    try:
        await smtp.ehlo(hostname=GATEWAY)
        await smtp.starttls(tls_context=client_context(cert, ciphers=DEFAULT_CIPHERS))
        await smtp.ehlo(hostname=GATEWAY)
        await smtp.mail("alice@example.org")
        await smtp.rcpt("bob@example.com")
        for chunk in encode_chunks(meta):
            response = await smtp.execute_command(f"XCPQ META {chunk}".encode())
            assert response.code == 250, response
        try:
            return (await smtp.data(body(i))).code
        except aiosmtplib.SMTPDataError as exc:
            return exc.code
    finally:
        await smtp.quit()


def database_error(*args: Any, **kwargs: Any) -> None:
    raise OperationalError("INSERT", {}, Exception("disk I/O error"))


@pytest.mark.parametrize("inline_max", [0, INLINE_BODY_MAX], ids=["files", "inline"])
def test_a_failed_batch_answers_451_to_each_and_keeps_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline_max: int) -> None:
    """With the bodies as files (each fdatasync'd) and in the database (committed with
    their rows): a failed batch keeps neither."""
    rig = Rig(tmp_path, inline_max=inline_max)
    certs = certificates(tmp_path / "certs")
    context = ServerContext(rig.maillog, rig.ids, "mgr.example.com")
    pvo = SimpleNamespace(gateway=lambda name: object() if name == GATEWAY else None)
    handler = QuarantineHandler(context, config=lambda: cast(Config, SimpleNamespace(pvo=pvo)),
                                service=rig.service, cpq_suspended=lambda: False)
    listener = Listener(name="cpq_listener", protocol="CPQ", interface_name="Management",
                        port=0, listen_queue_size=50, type="private",
                        hat=parse_hat(HAT), rat=make_rat([("ALL", "ACCEPT", 0)]))
    metas = [transfer_meta("Policy") for _ in range(SENDERS)]

    def rows(table: Table = messages) -> int:
        with rig.store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)

    async def scenario() -> tuple[list[int], list[int], list[int]]:
        tls = server_context(certs["manager"], ciphers=DEFAULT_CIPHERS)
        server = await start_listener(listener, "127.0.0.1", lambda: CpqSMTP(
            handler, listener=listener, interface_ip="127.0.0.1", context=context,
            tls_context=tls))
        port = server.sockets[0].getsockname()[1]
        try:
            monkeypatch.setattr(rig.store, "_index_many", database_error)
            failed = await asyncio.gather(*(ship(port, certs["gateway"], m, i)
                                            for i, m in enumerate(metas)))
            assert rows() == rows(message_bodies) == 0
            assert list(rig.store.bodies.iterdir()) == []
            monkeypatch.undo()
            stored = await asyncio.gather(*(ship(port, certs["gateway"], m, i)
                                            for i, m in enumerate(metas)))
            again = await asyncio.gather(*(ship(port, certs["gateway"], m, i)
                                           for i, m in enumerate(metas)))
            return failed, stored, again
        finally:
            server.close()
            await server.wait_closed()

    try:
        failed, stored, again = asyncio.run(scenario())
        assert failed == [451] * SENDERS
        assert stored == [250] * SENDERS and again == [250] * SENDERS
        files = len(list(rig.store.bodies.iterdir()))
        assert rows() == SENDERS
        assert (files, rows(message_bodies)) == ((SENDERS, 0) if inline_max == 0
                                                 else (0, SENDERS))
        lines = rig.lines()
        assert sum("application fault: OperationalError" in line for line in lines) == SENDERS
        assert sum("not stored again" in line for line in lines) == SENDERS
    finally:
        rig.close()
