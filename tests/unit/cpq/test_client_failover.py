"""A CPQ destination with several peers (a gateway's managers), over real TLS on 127.0.0.1.

One CPQ listener presents the manager certificate of `mgr.example.com`; the
destination lists a dead address and peers expecting other names before or
after it. A connection takes the first peer that answers and proves its
name, says which in mail_logs, and skips a failed peer for its back-off
(`PeerBackoff`) while another answers.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from cpqhelpers import GATEWAY, MANAGER, RELAY_LOCALHOST, issue_pair

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import DEFAULT_CIPHERS, CpqCertificate, Listener
from pvoq.cpq.client import CpqConnection, CpqDestination, CpqPeer, PeerBackoff
from pvoq.cpq.server import CpqHandler, CpqSMTP
from pvoq.cpq.tls import client_context, server_context
from pvoq.cpq.transfer import Transfer
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.client import DeliveryError
from pvoq.smtp.server import (
    MessageInfo,
    PvoqEnvelope,
    PvoqSession,
    ServerContext,
    start_listener,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Stored(CpqHandler):
    commits_whole = True

    async def store(self, session: PvoqSession, envelope: PvoqEnvelope, transfer: Transfer,
                    content: bytes, info: MessageInfo) -> str:
        return "250 2.0.0 Ok: quarantined"


def dead_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CpqCertificate]:
    return issue_pair(tmp_path_factory.mktemp("cpq-ca-failover"))


Scenario = Callable[[int, Callable[..., CpqDestination], Callable[[], str]], Awaitable[None]]


@pytest.fixture
def run(tmp_path: Path, certs: dict[str, CpqCertificate]) -> Callable[[Scenario], None]:
    async def serve(scenario: Scenario) -> None:
        server_log = MailLog(tmp_path / "mgr-logs", appliance="manager", serial="M")
        context = ServerContext(server_log, IdAllocator(tmp_path / "mgr-ids.json"), MANAGER)
        listener = Listener(name="cpq_listener", protocol="CPQ", interface_name="Management",
                            port=0, listen_queue_size=50, type="private",
                            hat=parse_hat(RELAY_LOCALHOST), rat=make_rat([("ALL", "ACCEPT", 0)]))
        tls = server_context(certs["manager"], ciphers=DEFAULT_CIPHERS)
        server = await start_listener(listener, "127.0.0.1", lambda: CpqSMTP(
            Stored(context), listener=listener, interface_ip="127.0.0.1", context=context,
            tls_context=tls))
        port = server.sockets[0].getsockname()[1]
        log = MailLog(tmp_path / "gw-logs", appliance=f"gateway {GATEWAY}", serial="GW1")
        ids = IdAllocator(tmp_path / "gw-ids.json")
        client_tls = client_context(certs["gateway"], ciphers=DEFAULT_CIPHERS)

        def destination(peers: list[CpqPeer], backoff: PeerBackoff) -> CpqDestination:
            return CpqDestination("the.cpq.host", resolve=lambda e: (peers[0].host, peers[0].port),
                                  expect_role="manager", tls_context=client_tls, maillog=log,
                                  ids=ids, local_hostname=GATEWAY, source_ip=None,
                                  timeout_s=10.0, peers=peers, backoff=backoff)

        def read_log() -> str:
            log.flush()
            return log.path.read_text()

        try:
            await scenario(port, destination, read_log)
        finally:
            server.close()
            await server.wait_closed()
            server_log.close()
            log.close()

    return lambda scenario: asyncio.run(serve(scenario))


async def opened(dest: CpqDestination) -> CpqConnection:
    conn = dest.connection()
    assert isinstance(conn, CpqConnection)
    await conn.open("192.0.2.1", 1)  # ignored: the peers are tried instead
    return conn


def test_a_dead_first_manager_falls_over_and_is_skipped_during_its_backoff(
        run: Callable[[Scenario], None]) -> None:
    dead = dead_port()

    async def scenario(port: int, destination: Callable[..., CpqDestination],
                       read_log: Callable[[], str]) -> None:
        clock = Clock()
        first = CpqPeer("127.0.0.1", dead, "mgr1.example.com")
        second = CpqPeer("127.0.0.1", port, MANAGER)
        dest = destination([first, second], PeerBackoff(min_s=60, max_s=600, clock=clock))
        conn = await opened(dest)
        assert conn.peer == second and conn.supports("xcpq")
        await conn.close()
        log = read_log()
        assert dest.peer_status()[1]["failures"] == 0
        assert f"CPQ peer mgr1.example.com (127.0.0.1:{dead}) failed: connection to " in log
        assert re.search(rf"DCID \d+ CPQ peer {re.escape(MANAGER)} \(127\.0\.0\.1:{port}\) "
                         r"verified \(manager 2 of 2\)", log)
        for _ in range(3):  # within the back-off: straight to the live manager
            conn = await opened(dest)
            assert conn.peer == second
            await conn.close()
        assert read_log().count(f"port: {dead} details") == 1
        [state] = [s for s in dest.peer_status() if s["failures"]]
        assert state["peer"] == first.label and state["retry_in"] == 60
        clock.now += 61  # its back-off over: the first manager is tried first again
        conn = await opened(dest)
        assert conn.peer == second
        await conn.close()
        assert read_log().count(f"port: {dead} details") == 2
        assert dest.peer_status()[0]["failures"] == 2
    run(scenario)


def test_a_manager_with_the_wrong_name_is_passed_over(run: Callable[[Scenario], None]) -> None:
    """The listed name is checked per manager: a certificate naming another is refused."""
    async def scenario(port: int, destination: Callable[..., CpqDestination],
                       read_log: Callable[[], str]) -> None:
        impostor = CpqPeer("127.0.0.1", port, "mgr1.example.com")
        real = CpqPeer("127.0.0.1", port, MANAGER.upper())
        conn = await opened(destination([impostor, real], PeerBackoff(min_s=60, max_s=60)))
        assert conn.peer == real
        await conn.close()
        assert f"certificate names '{MANAGER}', expected 'mgr1.example.com'" in read_log()
    run(scenario)


def test_no_manager_answers(run: Callable[[Scenario], None]) -> None:
    """Every manager failing fails the connection (the mail stays queued), naming each."""
    dead = dead_port()

    async def scenario(port: int, destination: Callable[..., CpqDestination],
                       read_log: Callable[[], str]) -> None:
        peers = [CpqPeer("127.0.0.1", dead, "mgr1.example.com"),
                 CpqPeer("127.0.0.1", port, "mgr2.example.com")]
        clock = Clock()
        dest = destination(peers, PeerBackoff(min_s=60, max_s=600, clock=clock))
        with pytest.raises(DeliveryError) as caught:
            await opened(dest)
        reason = caught.value.reason
        assert caught.value.temporary
        assert reason.startswith("no manager answered: mgr1.example.com (127.0.0.1:")
        assert f"mgr2.example.com (127.0.0.1:{port}): CPQ peer at" in reason
        # Both wait now: both are still tried, so delivery never stalls for want of one;
        # a failure within the back-off does not lengthen it.
        clock.now += 1
        with pytest.raises(DeliveryError):
            await opened(dest)
        assert read_log().count(f"port: {dead} details") == 2
        assert [s["failures"] for s in dest.peer_status()] == [1, 1]
    run(scenario)


class TestPeerBackoff:
    def test_order_skips_waiting_peers(self) -> None:
        clock = Clock()
        a, b, c = (CpqPeer("10.0.0.1", 7025, n) for n in ("a", "b", "c"))
        backoff = PeerBackoff(min_s=10, max_s=40, clock=clock)
        assert backoff.order([a, b, c]) == [a, b, c]
        assert backoff.failed(a, "down") == 10
        assert backoff.order([a, b, c]) == [b, c, a]  # a only if b and c fail too
        assert backoff.failed(a, "again, from a concurrent connection") == 10  # not counted
        clock.now += 10
        assert backoff.order([a, b, c]) == [a, b, c]
        assert backoff.failed(a, "still down") == 20
        backoff.failed(b, "down")
        clock.now += 1
        backoff.failed(c, "down")
        assert backoff.order([a, b, c]) == [b, c, a]  # all wait: the one due first first
        backoff.succeeded(a)
        assert backoff.order([a, b, c]) == [a, b, c]

    def test_describe(self) -> None:
        clock = Clock()
        peer = CpqPeer("10.0.0.1", 7025, "mgr1.example.com")
        backoff = PeerBackoff(min_s=30, max_s=60, clock=clock)
        backoff.failed(peer, "connection refused")
        clock.now += 5
        assert backoff.describe([peer]) == [{
            "peer": "mgr1.example.com (10.0.0.1:7025)", "failures": 1, "retry_in": 25.0,
            "last_error": "connection refused"}]


def test_a_single_peer_fails_with_its_own_reason(run: Callable[[Scenario], None]) -> None:
    """One listed manager: the error is that manager's, as before the list existed."""
    async def scenario(port: int, destination: Callable[..., CpqDestination],
                       read_log: Callable[[], str]) -> None:
        dest = destination([CpqPeer("127.0.0.1", port, "other.example.com")],
                           PeerBackoff(min_s=1, max_s=1))
        with pytest.raises(DeliveryError, match=f"is '{MANAGER}', not other.example.com"):
            await opened(dest)
        assert "verified" not in read_log()
    run(scenario)


def test_mail_pinned_to_another_listed_peer_tries_that_peer_first(
        run: Callable[[Scenario], None]) -> None:
    """A release receipt goes to the manager the release came from: given that peer's
    address, a connection tries it before the first listed one (and falls over as ever)."""
    dead = dead_port()

    async def scenario(port: int, destination: Callable[..., CpqDestination],
                       read_log: Callable[[], str]) -> None:
        first = CpqPeer("127.0.0.1", port, MANAGER)
        pinned = CpqPeer("127.0.0.1", dead, "mgr2.example.com")
        dest = destination([first, pinned], PeerBackoff(min_s=60, max_s=600))
        conn = dest.connection()
        assert isinstance(conn, CpqConnection)
        await conn.open("127.0.0.1", dead)
        assert conn.peer == first
        await conn.close()
        log = read_log()
        assert f"CPQ peer mgr2.example.com (127.0.0.1:{dead}) failed" in log
        assert log.index("mgr2.example.com") < log.index("verified (manager 1 of 2)")
    run(scenario)
