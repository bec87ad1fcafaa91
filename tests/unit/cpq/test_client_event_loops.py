"""The CPQ client on both event loops an appliance may run (asyncio's and uvloop's): a real
CPQ listener on 127.0.0.1 with mutual TLS, a pipelined transfer with its metadata (a body
large enough to be sent in pieces), `XCPQ CHECK`, and a certificate that does not verify."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pvoq.config.model import CpqCertificate
from pvoq.cpq.client import CpqConnection
from pvoq.cpq.metadata import KIND_QUARANTINE, VERSION, encode_chunks
from pvoq.cpq.server import CpqHandler, CpqSMTP
from pvoq.cpq.transfer import Transfer
from pvoq.maillog import MailLog
from pvoq.smtp.client import DeliveryError
from pvoq.smtp.server import MessageInfo, PvoqEnvelope, PvoqSession, ServerContext
from pvoq.testing.cpqlink import GATEWAY, LOOPS, cpq_link, issue_pair

BIG = b"Subject: big\r\n\r\n" + b"".join(b".%07d a line of the body\r\n" % n
                                       for n in range(60_000))


class Keep(CpqHandler):
    commits_whole = True

    def __init__(self, context: ServerContext) -> None:
        super().__init__(context)
        self.stored: list[tuple[str, bytes]] = []

    async def store(self, session: PvoqSession, envelope: PvoqEnvelope, transfer: Transfer,
                    content: bytes, info: MessageInfo) -> str:
        self.stored.append((transfer.transfer_id, content))
        return "250 2.0.0 Ok: quarantined"


def meta(n: int) -> dict[str, Any]:
    return {"v": VERSION, "kind": KIND_QUARANTINE, "transfer_id": f"gw1-SN-{n}",
            "origin": {"hostname": GATEWAY, "serial": "GW1-SN", "mid": n},
            "sender": "alice@example.org", "recipients": [{"rid": 0, "address": "b@example.com"}],
            "quarantines": [{"name": "Policy", "reason": "x", "stage": "content_filters"}],
            "received": 1700000000.5, "size": len(BIG)}


Scenario = Callable[[CpqConnection, int, Keep, MailLog], Awaitable[None]]


def run(tmp_path: Path, loop: str, scenario: Scenario, *, client_certs: str = "same") -> None:
    certs = issue_pair(tmp_path / "pki")
    mine: dict[str, CpqCertificate] = certs if client_certs == "same" \
        else issue_pair(tmp_path / "other-pki")
    kept: list[Keep] = []   # one handler for every session, on the listener's context

    def handler(context: ServerContext) -> Keep:
        if not kept:
            kept.append(Keep(context))
        return kept[0]

    def session(context: ServerContext, listener: Any, tls: Any) -> CpqSMTP:
        return CpqSMTP(handler(context), listener=listener, interface_ip="127.0.0.1",
                       context=context, tls_context=tls)

    async def main() -> None:
        async with cpq_link(tmp_path, session, server_certs=certs["manager"],
                            client_certs=mine["gateway"]) as link:
            await scenario(link.conn, link.port, handler(link.context), link.log)

    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(asyncio.wait_for(main(), 60))


@pytest.mark.parametrize("loop", list(LOOPS))
def test_pipelined_transfers_and_a_check_over_mutual_tls(tmp_path: Path, loop: str) -> None:
    async def scenario(conn: CpqConnection, port: int, handler: Keep, log: MailLog) -> None:
        await conn.open("127.0.0.1", port)
        assert conn.supports("pipelining") and conn.supports("xcpq")
        check = await conn.command("XCPQ CHECK")
        assert check.code == 250, check
        for n, body in ((1, BIG), (2, b"Subject: small\r\n\r\nhi\r\n")):
            replies = await conn.send(
                mid=n, sender="alice@example.org", recipients=[(0, "b@example.com")],
                body=body, extra=[f"XCPQ META {c}" for c in encode_chunks(meta(n))])
            assert replies[0].code == 250, replies
        assert handler.stored == [("gw1-SN-1", BIG), ("gw1-SN-2", b"Subject: small\r\n\r\nhi\r\n")]
        log.flush()
        assert re.search(r"DCID \d+ TLS success protocol TLSv1\.3 cipher \S+ the\.cpq\.host",
                         log.path.read_text())

    run(tmp_path, loop, scenario)


@pytest.mark.parametrize("loop", list(LOOPS))
def test_a_server_certificate_of_another_ca_is_a_verify_error(tmp_path: Path, loop: str) -> None:
    async def scenario(conn: CpqConnection, port: int, handler: Keep, log: MailLog) -> None:
        with pytest.raises(DeliveryError, match="TLS required: verify error: "):
            await conn.open("127.0.0.1", port)
        log.flush()
        text = log.path.read_text()
        assert re.search(r"DCID (\d+) TLS failed: verify error: .+\n.*DCID \1 TLS was required "
                         r"but could not be successfully negotiated", text), text
        assert handler.stored == []

    run(tmp_path, loop, scenario, client_certs="other")
