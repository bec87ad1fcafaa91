"""The sending side of pipelined transactions: several `send`s at once on one connection.

A connection made with `pipeline_transactions` to a server offering CHUNKING and
PIPELINING writes each small message as one BDAT transaction the moment it is sent and
reads its replies after those of the transactions written before: each `send` gets its
own answers. A large message goes by DATA, alone. A transaction abandoned half-read
closes the connection rather than hand its replies to the next. Real sockets on
127.0.0.1, a real `ChunkingSMTP` listener; every wait bounded.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import Listener
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp import client as smtp_client
from pvoq.smtp import replies
from pvoq.smtp.chunking import ChunkingSMTP
from pvoq.smtp.client import DeliveryError, SmtpConnection, TlsPolicy
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
WAIT_S = 20.0


def message(subject: str, lines: int = 1) -> bytes:
    return f"Subject: {subject}\r\n\r\n".encode() + b"hello there\r\n" * lines


class Keeper(BaseHandler):
    """Answers each message by its subject: `refuse...` 554, anything else 250 naming it;
    `slow...` takes a while; CHUNKING offered when `chunking`."""

    commits_whole = True

    def __init__(self, context: ServerContext, chunking: bool) -> None:
        super().__init__(context)
        self.chunking = chunking
        self.stored: list[str] = []

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        if self.chunking:
            responses.insert(len(responses) - 1, replies.CHUNKING.more())
        return responses

    async def accept(self, server: PvoqSMTP, session: PvoqSession, envelope: PvoqEnvelope,
                     content: bytes, info: MessageInfo) -> str:
        if info.subject.startswith("slow"):
            await asyncio.sleep(0.2)
        if info.subject.startswith("refuse"):
            return f"554 5.7.1 refused {info.subject}"
        self.stored.append(info.subject)
        return f"250 2.0.0 Ok: kept {info.subject}"


async def serving(tmp_path: Path, chunking: bool, scenario: Any) -> Any:
    maillog = MailLog(tmp_path / "server-logs", appliance="m m.example.test", serial="SN")
    context = ServerContext(maillog, IdAllocator(tmp_path / "ids.json"), "m.example.test")
    listener = Listener(name="cpq", protocol="SMTP", interface_name="Management", port=0,
                        listen_queue_size=50, type="private", hat=parse_hat(ACCEPT_ALL),
                        rat=make_rat([("ALL", "ACCEPT", 0)]), received_header=False)
    handler = Keeper(context, chunking)
    server = await start_listener(listener, "127.0.0.1", lambda: ChunkingSMTP(
        handler, listener=listener, interface_ip="127.0.0.1", context=context))
    log = MailLog(tmp_path / "client-logs", appliance="gw", serial="GW")
    conn = SmtpConnection(maillog=log, ids=IdAllocator(tmp_path / "client-ids.json"),
                          local_hostname="gw.example.test", label="the.cpq.host",
                          tls=TlsPolicy(), timeout_s=WAIT_S, pipeline_transactions=True)
    try:
        await conn.open("127.0.0.1", server.sockets[0].getsockname()[1])
        return await asyncio.wait_for(scenario(conn, handler), WAIT_S)
    finally:
        await conn.close()
        log.close()
        server.close()
        await server.wait_closed()


def run(tmp_path: Path, scenario: Any, chunking: bool = True) -> Any:
    return asyncio.run(serving(tmp_path, chunking, scenario))


async def send(conn: SmtpConnection, mid: int, body: bytes,
               recipients: tuple[str, ...] = ("b@example.com",)) -> dict[int, Any]:
    return await conn.send(mid=mid, sender="a@example.org",
                           recipients=list(enumerate(recipients)), body=body)


def test_each_send_gets_its_own_answer_with_eight_in_flight(tmp_path: Path) -> None:
    subjects = [("slow" if n % 3 == 0 else "m") + str(n) for n in range(20)]

    async def scenario(conn: SmtpConnection, handler: Keeper) -> list[Any]:
        assert conn.in_flight == smtp_client.TRANSACTIONS_IN_FLIGHT == 16
        return await asyncio.gather(*(send(conn, n, message(s)) for n, s in enumerate(subjects)))

    results = run(tmp_path, scenario)
    assert [r[0].text for r in results] == [f"2.0.0 Ok: kept {s}" for s in subjects]


def test_a_refusal_among_them_is_its_own_and_the_others_go_on(tmp_path: Path) -> None:
    async def scenario(conn: SmtpConnection, handler: Keeper) -> list[Any]:
        return await asyncio.gather(
            send(conn, 1, message("m1")), send(conn, 2, message("refuse2")),
            send(conn, 3, message("m3"), recipients=("bad address@x", "c@example.com")),
            send(conn, 4, message("m4")))

    results = run(tmp_path, scenario)
    assert results[0][0].ok and results[3][0].ok
    assert results[1][0].code == 554 and "refuse2" in results[1][0].text
    assert results[2][0].code == 553 and results[2][1].text == "2.0.0 Ok: kept m3"


def test_a_large_message_goes_by_data_alone_between_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smtp_client, "STREAM_ABOVE", 200)
    large = message("large", lines=100)

    async def scenario(conn: SmtpConnection, handler: Keeper) -> list[Any]:
        return await asyncio.gather(send(conn, 1, message("slow1")), send(conn, 2, large),
                                    send(conn, 3, message("m3")))

    results = run(tmp_path, scenario)
    assert [r[0].text for r in results] == ["2.0.0 Ok: kept slow1", "2.0.0 Ok: kept large",
                                           "2.0.0 Ok: kept m3"]


def test_without_chunking_one_at_a_time_all_answered(tmp_path: Path) -> None:
    async def scenario(conn: SmtpConnection, handler: Keeper) -> list[Any]:
        assert conn.in_flight == 1
        return await asyncio.gather(*(send(conn, n, message(f"m{n}")) for n in range(5)))

    results = run(tmp_path, scenario, chunking=False)
    assert [r[0].text for r in results] == [f"2.0.0 Ok: kept m{n}" for n in range(5)]


def test_a_send_abandoned_half_read_closes_the_connection(tmp_path: Path) -> None:
    """Its replies cannot be told from the next transaction's: every later send fails
    (the caller retries), none is answered with another's reply."""

    async def scenario(conn: SmtpConnection, handler: Keeper) -> tuple[Any, ...]:
        first = asyncio.ensure_future(send(conn, 1, message("slow1")))
        second = asyncio.ensure_future(send(conn, 2, message("m2")))
        await asyncio.sleep(0.05)
        first.cancel()
        outcome = await asyncio.gather(first, second, return_exceptions=True)
        with pytest.raises(DeliveryError):
            await send(conn, 3, message("m3"))
        return tuple(outcome)

    first, second = run(tmp_path, scenario)
    assert isinstance(first, asyncio.CancelledError)
    assert isinstance(second, DeliveryError)


def test_closing_with_transactions_under_way_hangs_up_without_quit(tmp_path: Path) -> None:
    """Their replies would be read as the QUIT's: the connection is closed instead, and
    they fail (to be sent again), none answered with another's reply."""

    async def scenario(conn: SmtpConnection, handler: Keeper) -> list[Any]:
        sends = [asyncio.ensure_future(send(conn, n, message(f"slow{n}"))) for n in (1, 2)]
        await asyncio.sleep(0.05)
        await conn.close()
        assert handler.stored == []  # closed at once: no QUIT waiting behind their stores
        return await asyncio.gather(*sends, return_exceptions=True)

    outcomes = run(tmp_path, scenario)
    assert all(isinstance(o, DeliveryError) for o in outcomes), outcomes
