"""Tests for pvoq.delivery.queue: outcomes, back-off and spool state, with fake connections."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pvoq.delivery.backoff import retry_delay
from pvoq.delivery.queue import DeliveryQueues, Destination, Target
from pvoq.maillog import MailLog
from pvoq.smtp.client import BodySource, DeliveryError, Reply
from pvoq.spool.store import BOUNCED, DELIVERED, PENDING, Entry, Recipient, Spool

HOST = "example.com"
RETRY_MIN_S = 60.0
RETRY_MAX_S = 3600.0
START = 1_700_000_000.0
BODY = b"From: alice@example.org\r\nSubject: hi\r\n\r\nhello\r\n"

OK = Reply(250, "2.0.0 Ok: queued")
LATER = Reply(451, "4.3.0 Try again later")
BUSY = Reply(450, "4.2.1 Mailbox busy")
NO_SUCH_USER = Reply(550, "5.1.1 No such user")

# A reply script: called with (MID, RID) for each recipient sent, returns its Reply.
Script = Callable[[int, int], Reply]


class Clock:
    """An injectable clock that moves only when told."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Sent:
    mid: int
    rids: list[int]
    body: bytes


class FakeConnection:
    """Stands in for SmtpConnection: open/send/close and a DCID, no sockets."""

    def __init__(self, destination: FakeDestination) -> None:
        self.destination = destination
        self.dcid = 0
        self.in_flight = destination.in_flight
        self.under_way = 0

    async def open(self, host: str, port: int) -> None:
        self.destination.opened.append((host, port))
        self.dcid = next(self.destination.dcids)
        if self.destination.refuse_connection is not None:
            raise DeliveryError(self.destination.refuse_connection)

    async def send(self, *, mid: int, sender: str, recipients: Sequence[tuple[int, str]],
                   body: BodySource, extra: Sequence[str] = (), start_note: str = "",
                   done_note: str = "") -> dict[int, Reply]:
        if self.destination.drop_during_send is not None:
            raise DeliveryError(self.destination.drop_during_send)
        self.under_way += 1
        self.destination.most_under_way = max(self.destination.most_under_way, self.under_way)
        try:
            await asyncio.sleep(0)  # the others on the connection go meanwhile
        finally:
            self.under_way -= 1
        if self.destination.drop_after is not None and \
                len(self.destination.sent) >= self.destination.drop_after:
            raise DeliveryError("connection lost")
        # the body as the connection streams it: its pieces, read from the spool
        sent = b"".join(body.pieces(7))
        self.destination.sent.append(Sent(mid, [rid for rid, _ in recipients], sent))
        return {rid: self.destination.script(mid, rid) for rid, _ in recipients}

    async def close(self) -> None:
        self.destination.closed += 1


@dataclass
class FakeDestination(Destination):
    """A destination whose connections answer by a script."""

    name: str = HOST
    script: Script = lambda mid, rid: OK
    holds: bool = False
    route: Target | None = field(default_factory=lambda: Target("192.0.2.25", 25))
    refuse_connection: str | None = None
    drop_during_send: str | None = None
    in_flight: int = 1  # the connection's `in_flight`
    drop_after: int | None = None  # the link breaks once this many were sent
    most_under_way: int = 0
    opened: list[tuple[str, int]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    closed: int = 0
    dcids: Iterator[int] = field(default_factory=lambda: itertools.count(500))

    @property
    def holds_on_permanent_failure(self) -> bool:  # type: ignore[override]
        return self.holds

    def target(self, entry: Entry) -> Target | None:
        return self.route

    def connection(self) -> FakeConnection:  # type: ignore[override]
        return FakeConnection(self)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


@pytest.fixture
def maillog(tmp_path: Path) -> Iterator[MailLog]:
    log = MailLog(tmp_path / "logs", appliance="test", serial="SN")
    yield log
    log.close()


@pytest.fixture
def destination() -> FakeDestination:
    return FakeDestination()


@pytest.fixture
def finished() -> list[int]:
    return []


@pytest.fixture
def queues(spool: Spool, maillog: MailLog, destination: FakeDestination, clock: Clock,
           finished: list[int]) -> DeliveryQueues:
    return DeliveryQueues(spool=spool, maillog=maillog,
                          destination_for=lambda name: destination,
                          retry_min_s=RETRY_MIN_S, retry_max_s=RETRY_MAX_S, clock=clock,
                          on_finished=lambda entry: finished.append(entry.mid))


def queue_entry(queues: DeliveryQueues, mid: int, *rids: int, host: str = HOST) -> Entry:
    """Spool an entry of *mid* with recipients *rids* routed to *host*, and queue it."""
    entry = Entry(mid=mid, sender="alice@example.org",
                  recipients=[Recipient(rid, f"user{rid}@{host}", host=host) for rid in rids],
                  received=START - 100 + mid, size=len(BODY))
    queues.spool.put(entry, BODY)
    queues.add(entry)
    return entry


def two_hosts(queues: DeliveryQueues) -> Entry:
    """Spool and queue MID 1 with one recipient at HOST and one at other.example."""
    entry = Entry(mid=1, sender="alice@example.org", received=START, size=len(BODY),
                  recipients=[Recipient(0, "a@example.com", host=HOST),
                              Recipient(1, "b@other.example", host="other.example")])
    queues.spool.put(entry, BODY)
    queues.add(entry)
    return entry


def deliver(queues: DeliveryQueues, host: str = HOST) -> None:
    """Run one delivery pass over the due recipients of *host*."""
    due, _ = queues._due(host)
    asyncio.run(queues.deliver_host(host, due))
    queues.spool.flush()  # outcomes are recorded without waiting for the disk


def on_disk(spool: Spool, mid: int) -> Entry:
    """The entry of *mid* as a restart would read it."""
    found = spool.get(mid)
    assert found is not None
    return found


def log_text(maillog: MailLog) -> str:
    return maillog.path.read_text(encoding="utf-8")


class TestDelivered:
    def test_250_delivers_and_removes_entry(self, queues: DeliveryQueues, spool: Spool,
                                            destination: FakeDestination,
                                            finished: list[int]) -> None:
        """A 250 marks the recipient delivered and removes the entry and body from the spool."""
        entry = queue_entry(queues, 1, 0)
        deliver(queues)
        assert entry.recipients[0].status == DELIVERED
        assert 1 not in spool and spool.get(1) is None
        assert 1 not in queues.entries
        assert finished == [1]
        assert queues.hosts[HOST].stats.delivered == 1
        assert destination.sent == [Sent(1, [0], BODY)]

    def test_one_connection_for_several_entries(self, queues: DeliveryQueues,
                                                destination: FakeDestination) -> None:
        """Due entries for one target share a connection, which is closed afterwards."""
        queue_entry(queues, 1, 0)
        queue_entry(queues, 2, 0, 1)
        deliver(queues)
        assert destination.opened == [("192.0.2.25", 25)]
        assert destination.closed == 1
        assert [(s.mid, s.rids) for s in destination.sent] == [(1, [0]), (2, [0, 1])]
        assert queues.entries == {}

    def test_nothing_due_after_delivery(self, queues: DeliveryQueues) -> None:
        """Once delivered, a host has nothing due and nothing waiting."""
        queue_entry(queues, 1, 0)
        deliver(queues)
        assert queues._due(HOST) == ([], None)
        assert queues.active_recipients(HOST) == 0


class TestTemporaryFailure:
    def test_4xx_defers_with_backoff(self, queues: DeliveryQueues, spool: Spool,
                                     destination: FakeDestination, clock: Clock) -> None:
        """A 4xx keeps the recipient pending, retried after the back-off, and kept on disk."""
        destination.script = lambda mid, rid: LATER
        entry = queue_entry(queues, 1, 0)
        deliver(queues)
        r = entry.recipients[0]
        assert r.status == PENDING and r.attempts == 1
        assert r.next_attempt == clock.now + retry_delay(1, min_s=RETRY_MIN_S,
                                                         max_s=RETRY_MAX_S)
        assert "451" in r.last_error
        assert on_disk(spool, 1) == entry
        assert spool.read_body(1)
        assert queues.hosts[HOST].stats.soft_bounced == 1

    def test_deferred_is_not_due_until_its_time(self, queues: DeliveryQueues,
                                                destination: FakeDestination,
                                                clock: Clock) -> None:
        """A deferred recipient is due again only once the clock reaches its next attempt."""
        destination.script = lambda mid, rid: LATER
        entry = queue_entry(queues, 1, 0)
        deliver(queues)
        next_attempt = entry.recipients[0].next_attempt
        assert queues._due(HOST) == ([], next_attempt)
        clock.now = next_attempt
        due, _ = queues._due(HOST)
        assert [(e.mid, [r.rid for r in rs]) for e, rs in due] == [(1, [0])]

    def test_backoff_doubles(self, queues: DeliveryQueues, destination: FakeDestination,
                             clock: Clock) -> None:
        """Each further temporary failure doubles the wait."""
        destination.script = lambda mid, rid: LATER
        entry = queue_entry(queues, 1, 0)
        waits = []
        for _ in range(3):
            deliver(queues)
            waits.append(entry.recipients[0].next_attempt - clock.now)
            clock.now = entry.recipients[0].next_attempt
        assert waits == [retry_delay(n, min_s=RETRY_MIN_S, max_s=RETRY_MAX_S)
                         for n in (1, 2, 3)]
        assert waits[1] == 2 * waits[0]

    def test_retry_then_success(self, queues: DeliveryQueues, spool: Spool,
                                destination: FakeDestination, clock: Clock) -> None:
        """A deferred recipient delivered on retry finishes the entry."""
        destination.script = lambda mid, rid: LATER
        entry = queue_entry(queues, 1, 0)
        deliver(queues)
        destination.script = lambda mid, rid: OK
        clock.now = entry.recipients[0].next_attempt
        deliver(queues)
        assert entry.recipients[0].status == DELIVERED and entry.recipients[0].attempts == 2
        assert 1 not in spool

    def test_wake_clears_backoff(self, queues: DeliveryQueues,
                                 destination: FakeDestination) -> None:
        """wake() makes a deferred recipient due at once."""
        destination.script = lambda mid, rid: LATER
        queue_entry(queues, 1, 0)
        deliver(queues)
        assert queues._due(HOST)[0] == []
        queues.wake(HOST)
        assert [e.mid for e, _ in queues._due(HOST)[0]] == [1]


class TestConnectionFailure:
    def test_failed_connection_defers_all(self, queues: DeliveryQueues, spool: Spool,
                                          destination: FakeDestination, clock: Clock,
                                          maillog: MailLog) -> None:
        """A connection that cannot open defers every due recipient and marks the host down."""
        destination.refuse_connection = "connection to 192.0.2.25:25 failed: refused"
        first = queue_entry(queues, 1, 0, 1)
        second = queue_entry(queues, 2, 0)
        deliver(queues)
        stats = queues.hosts[HOST].stats
        assert stats.down
        assert stats.last_error == destination.refuse_connection
        expected = clock.now + retry_delay(1, min_s=RETRY_MIN_S, max_s=RETRY_MAX_S)
        for entry in (first, second):
            for r in entry.recipients:
                assert (r.status, r.attempts, r.next_attempt) == (PENDING, 1, expected)
                assert r.last_error == destination.refuse_connection
            assert on_disk(spool, entry.mid) == entry
        assert destination.sent == []
        assert destination.closed == 1
        assert "MID 1 to RID [0, 1] - connection to 192.0.2.25:25 failed" in log_text(maillog)

    def test_host_up_again_after_success(self, queues: DeliveryQueues,
                                         destination: FakeDestination, clock: Clock) -> None:
        """A host marked down is up again once a connection opens."""
        destination.refuse_connection = "refused"
        entry = queue_entry(queues, 1, 0)
        deliver(queues)
        assert queues.hosts[HOST].stats.down
        destination.refuse_connection = None
        clock.now = entry.recipients[0].next_attempt
        deliver(queues)
        assert not queues.hosts[HOST].stats.down
        assert entry.recipients[0].status == DELIVERED

    def test_connection_lost_during_send(self, queues: DeliveryQueues, spool: Spool,
                                         destination: FakeDestination) -> None:
        """A connection lost mid-transaction defers the entries not yet delivered."""
        destination.drop_during_send = "connection lost"
        entry = queue_entry(queues, 1, 0)
        deliver(queues)
        assert queues.hosts[HOST].stats.down
        assert entry.recipients[0].status == PENDING
        assert entry.recipients[0].last_error == "connection lost"
        assert on_disk(spool, 1) == entry

    def test_no_route_defers(self, queues: DeliveryQueues, destination: FakeDestination) -> None:
        """An entry without a target is deferred without connecting."""
        destination.route = None
        entry = queue_entry(queues, 1, 0)
        deliver(queues)
        assert destination.opened == []
        assert entry.recipients[0].status == PENDING
        assert HOST in entry.recipients[0].last_error


class TestTransactionsInFlight:
    """A connection that takes pipelined transactions (CPQ) carries several at once."""

    def test_up_to_in_flight_at_once_all_delivered(self, queues: DeliveryQueues,
                                                   destination: FakeDestination,
                                                   finished: list[int]) -> None:
        destination.in_flight = 4
        for mid in range(1, 11):
            queue_entry(queues, mid, 0)
        deliver(queues)
        assert destination.most_under_way == 4
        assert len(destination.opened) == 1
        assert sorted(s.mid for s in destination.sent) == list(range(1, 11))
        assert sorted(finished) == list(range(1, 11))

    def test_one_at_a_time_otherwise(self, queues: DeliveryQueues,
                                     destination: FakeDestination) -> None:
        for mid in range(1, 6):
            queue_entry(queues, mid, 0)
        deliver(queues)
        assert destination.most_under_way == 1
        assert len(destination.sent) == 5

    def test_a_broken_link_defers_every_entry_not_delivered(self, queues: DeliveryQueues,
                                                            spool: Spool,
                                                            destination: FakeDestination,
                                                            finished: list[int]) -> None:
        destination.in_flight = 4
        destination.drop_after = 3
        entries = [queue_entry(queues, mid, 0) for mid in range(1, 11)]
        deliver(queues)
        delivered = {s.mid for s in destination.sent}
        assert len(delivered) == 3 and sorted(finished) == sorted(delivered)
        assert queues.hosts[HOST].stats.down
        for entry in entries:
            if entry.mid in delivered:
                continue
            assert entry.recipients[0].status == PENDING
            assert entry.recipients[0].last_error == "connection lost"
            assert entry.recipients[0].attempts == 1
            assert on_disk(spool, entry.mid) == entry


    def test_an_application_fault_among_them_goes_up_once_the_others_ended(
            self, queues: DeliveryQueues, destination: FakeDestination,
            finished: list[int]) -> None:
        """As it would one at a time: the host's worker logs it and retries what is due."""
        destination.in_flight = 4

        def script(mid: int, rid: int) -> Reply:
            if mid == 2:
                raise RuntimeError("boom")
            return OK

        destination.script = script
        for mid in range(1, 9):
            queue_entry(queues, mid, 0)
        with pytest.raises(RuntimeError, match="boom"):
            deliver(queues)
        assert 2 not in finished and 1 in finished


class TestPermanentFailure:
    def test_5xx_bounces_downstream(self, queues: DeliveryQueues, spool: Spool,
                                    destination: FakeDestination, maillog: MailLog,
                                    finished: list[int]) -> None:
        """A 5xx from a downstream host bounces the recipient and finishes the entry."""
        destination.script = lambda mid, rid: NO_SUCH_USER
        entry = queue_entry(queues, 1, 0)
        deliver(queues)
        assert entry.recipients[0].status == BOUNCED
        assert "550" in entry.recipients[0].last_error
        assert queues.hosts[HOST].stats.hard_bounced == 1
        assert 1 not in spool
        assert finished == [1]
        assert "Bounced: DCID" in log_text(maillog)

    def test_5xx_is_held_on_cpq_destination(self, queues: DeliveryQueues, spool: Spool,
                                            destination: FakeDestination, clock: Clock,
                                            maillog: MailLog) -> None:
        """A destination that holds on 5xx keeps the recipient pending, retried at the maximum."""
        destination.holds = True
        destination.script = lambda mid, rid: NO_SUCH_USER
        entry = queue_entry(queues, 1, 0)
        deliver(queues)
        r = entry.recipients[0]
        assert r.status == PENDING
        assert r.next_attempt == clock.now + RETRY_MAX_S
        assert "550" in r.last_error
        assert on_disk(spool, 1) == entry
        assert queues.hosts[HOST].stats.hard_bounced == 0
        assert "held" in log_text(maillog)

    def test_held_recipient_counts_one_attempt(self, queues: DeliveryQueues,
                                               destination: FakeDestination) -> None:
        """A held 5xx counts as one attempt, not two."""
        destination.holds = True
        destination.script = lambda mid, rid: NO_SUCH_USER
        entry = queue_entry(queues, 1, 0)
        deliver(queues)
        assert entry.recipients[0].attempts == 1


class TestPartialResults:
    def test_only_failed_recipient_is_retried(self, queues: DeliveryQueues, spool: Spool,
                                              destination: FakeDestination,
                                              clock: Clock) -> None:
        """With one 250 and one 450, only the 450 recipient is retried."""
        destination.script = lambda mid, rid: OK if rid == 0 else BUSY
        entry = queue_entry(queues, 1, 0, 1)
        deliver(queues)
        delivered, deferred = entry.recipients
        assert delivered.status == DELIVERED
        assert deferred.status == PENDING
        stored = on_disk(spool, 1)
        assert [r.status for r in stored.recipients] == [DELIVERED, PENDING]

        clock.now = deferred.next_attempt
        destination.script = lambda mid, rid: OK
        deliver(queues)
        assert [s.rids for s in destination.sent] == [[0, 1], [1]]
        assert deferred.status == DELIVERED
        assert 1 not in spool

    def test_partial_bounce_keeps_entry_for_the_rest(self, queues: DeliveryQueues, spool: Spool,
                                                     destination: FakeDestination) -> None:
        """A bounced recipient is final while a deferred one keeps the entry queued."""
        destination.script = lambda mid, rid: NO_SUCH_USER if rid == 0 else LATER
        entry = queue_entry(queues, 1, 0, 1)
        deliver(queues)
        assert [r.status for r in entry.recipients] == [BOUNCED, PENDING]
        assert [r.status for r in on_disk(spool, 1).recipients] == [BOUNCED, PENDING]
        assert queues.active_recipients(HOST) == 1

    def test_other_hosts_are_untouched(self, queues: DeliveryQueues,
                                       destination: FakeDestination) -> None:
        """A pass over one host leaves recipients of other hosts pending."""
        entry = two_hosts(queues)
        deliver(queues, HOST)
        assert [r.status for r in entry.recipients] == [DELIVERED, PENDING]
        assert queues.active_recipients("other.example") == 1
        assert destination.sent == [Sent(1, [0], BODY)]


class TestMaximumTimeInQueue:
    def test_expired_recipients_bounce_and_call_the_bounce_hook(
            self, spool: Spool, maillog: MailLog, destination: FakeDestination,
            clock: Clock) -> None:
        """Past the maximum time in queue a pending recipient bounces (5.4.7) and a DSN is asked for."""
        bounced: list[tuple[int, list[int], str]] = []
        queues = DeliveryQueues(
            spool=spool, maillog=maillog, destination_for=lambda name: destination,
            retry_min_s=RETRY_MIN_S, retry_max_s=RETRY_MAX_S, max_queue_lifetime_s=3600,
            clock=clock,
            on_bounce=lambda e, rs, why: bounced.append((e.mid, [r.rid for r in rs], why)))
        destination.refuse_connection = "connection refused"
        entry = queue_entry(queues, 1, 0, 1)
        deliver(queues)
        clock.now += 1800
        queues.expire(HOST)
        assert all(r.pending for r in entry.recipients)
        clock.now += 3600
        queues.expire(HOST)
        assert [r.status for r in entry.recipients] == [BOUNCED, BOUNCED]
        assert bounced and bounced[0][0] == 1 and bounced[0][1] == [0, 1]
        assert bounced[0][2].startswith("5.4.7 - Delivery expired")
        assert 1 not in spool
        assert queues.counters.row("expired_recipients")[1] == 2
        assert "Bounced: MID 1 to RID [0, 1] - 5.4.7" in log_text(maillog)

    def test_a_destination_that_does_not_expire_keeps_its_mail(
            self, spool: Spool, maillog: MailLog, destination: FakeDestination,
            clock: Clock) -> None:
        """Mail for a non-expiring destination (CPQ) stays queued however old it is."""
        destination.expires = False
        queues = DeliveryQueues(
            spool=spool, maillog=maillog, destination_for=lambda name: destination,
            retry_min_s=RETRY_MIN_S, retry_max_s=RETRY_MAX_S, max_queue_lifetime_s=60,
            clock=clock)
        entry = queue_entry(queues, 1, 0)
        clock.now += 10 * 86400
        queues.expire(HOST)
        assert entry.recipients[0].pending
        assert 1 in spool


class TestHardBounceHook:
    def test_5xx_calls_the_bounce_hook_with_the_reply(
            self, spool: Spool, maillog: MailLog, destination: FakeDestination,
            clock: Clock) -> None:
        """A 5xx from a downstream host asks for a DSN naming the reply."""
        bounced: list[tuple[int, list[int], str]] = []
        destination.script = lambda mid, rid: NO_SUCH_USER if rid == 1 else OK
        queues = DeliveryQueues(
            spool=spool, maillog=maillog, destination_for=lambda name: destination,
            retry_min_s=RETRY_MIN_S, retry_max_s=RETRY_MAX_S, clock=clock,
            on_bounce=lambda e, rs, why: bounced.append((e.mid, [r.rid for r in rs], why)))
        queue_entry(queues, 1, 0, 1)
        deliver(queues)
        assert bounced == [(1, [1], "550 5.1.1 No such user")]
        assert queues.counters.row("delivered_recipients")[1] == 1
        assert queues.counters.row("hard_bounced_recipients")[1] == 1


class TestOperatorActions:
    def test_delete_by_host_removes_messages_that_are_then_never_delivered(
            self, queues: DeliveryQueues, spool: Spool, destination: FakeDestination,
            maillog: MailLog) -> None:
        """deleterecipients on a host marks its recipients deleted and drops finished messages."""
        queue_entry(queues, 1, 0)
        queue_entry(queues, 2, 0, host="other.example")
        count = queues.delete(lambda e, r: r.host == HOST)
        assert count == 1
        assert 1 not in spool and 2 in spool
        deliver(queues)
        assert destination.sent == []
        assert "MID 1 RID [0] deleted by deleterecipients" in log_text(maillog)
        assert "Message finished MID 1 aborted" in log_text(maillog)
        assert queues.delete(lambda e, r: r.host == HOST) == 0

    def test_delete_by_sender_touches_only_that_sender(
            self, queues: DeliveryQueues) -> None:
        """Selecting by envelope sender leaves other senders' mail queued."""
        queue_entry(queues, 1, 0)
        other = queue_entry(queues, 2, 0)
        other.sender = "bob@example.net"
        assert [e.mid for e, _ in queues.matching(lambda e, r: e.sender == "bob@example.net")] == [2]
        assert queues.delete(lambda e, r: e.sender == "alice@example.org") == 1
        assert list(queues.entries) == [2]

    def test_suspended_delivery_sends_nothing_until_resumed(
            self, queues: DeliveryQueues, destination: FakeDestination) -> None:
        """suspenddel stops a delivery pass between messages; resumedel lets it go on."""
        queue_entry(queues, 1, 0)
        queues.suspend()
        deliver(queues)
        assert destination.sent == [] and queues.entries[1].recipients[0].pending
        queues.resume()
        deliver(queues)
        assert [s.mid for s in destination.sent] == [1]

    def test_a_backlog_opens_several_connections(
            self, queues: DeliveryQueues, destination: FakeDestination) -> None:
        """Many due messages for one host are spread over more than one connection."""
        for mid in range(1, 62):
            queue_entry(queues, mid, 0)
        deliver(queues)
        assert len(destination.opened) == 4  # 61 messages, 20 a connection
        assert sorted(s.mid for s in destination.sent) == list(range(1, 62))


class TestRobustness:
    def test_recipients_deleted_while_on_the_wire_stay_deleted(
            self, queues: DeliveryQueues, destination: FakeDestination, spool: Spool) -> None:
        """deleterecipients during a delivery pass: the deleted recipient is not marked delivered."""
        queue_entry(queues, 1, 0)
        queue_entry(queues, 2, 0)
        script = destination.script

        def delete_mid_2_then_answer(mid: int, rid: int) -> Reply:
            if mid == 1:
                queues.delete(lambda e, r: e.mid == 2)
            return script(mid, rid)

        destination.script = delete_mid_2_then_answer
        deliver(queues)
        assert [s.mid for s in destination.sent] == [1]
        assert 2 not in spool and 2 not in queues.entries

    def test_a_worker_survives_an_unexpected_error_and_delivers_later(
            self, spool: Spool, maillog: MailLog, destination: FakeDestination) -> None:
        """A bug in one delivery pass is logged; the host's worker goes on and delivers."""
        failures = [RuntimeError("boom")]

        def flaky(mid: int, rid: int) -> Reply:
            if failures:
                raise failures.pop()
            return OK

        destination.script = flaky

        async def main() -> list[int]:
            queues = DeliveryQueues(spool=spool, maillog=maillog,
                                    destination_for=lambda name: destination,
                                    retry_min_s=0.05, retry_max_s=0.1)
            queues.start()
            queue_entry(queues, 1, 0)
            for _ in range(200):
                if 1 not in spool:
                    break
                await asyncio.sleep(0.05)
            await queues.stop()
            return [s.mid for s in destination.sent]

        assert asyncio.run(main()) == [1, 1]  # the failed pass, then the delivery
        assert 1 not in spool
        assert "application fault: RuntimeError: boom" in log_text(maillog)


class TestPerHostIndex:
    """A host's pass, its counts and its expiry read that host's entries only."""

    def test_a_backlog_for_one_host_is_not_read_by_another(
            self, queues: DeliveryQueues, destination: FakeDestination,
            monkeypatch: pytest.MonkeyPatch) -> None:
        for mid in range(1, 301):
            queue_entry(queues, mid, 0, host="down.example")
        queue_entry(queues, 900, 0)
        read: list[int] = []
        real = Entry.pending_for

        def counted(entry: Entry, host: str) -> list[Recipient]:
            read.append(entry.mid)
            return real(entry, host)

        monkeypatch.setattr(Entry, "pending_for", counted)
        due, _ = queues._due(HOST)
        assert [(e.mid, [r.rid for r in rcpts]) for e, rcpts in due] == [(900, [0])]
        assert set(read) == {900}
        assert queues.active_recipients("down.example") == 300
        assert queues.oldest(HOST) == START - 100 + 900

    def test_a_finished_entry_leaves_every_host_it_was_queued_for(
            self, queues: DeliveryQueues, destination: FakeDestination) -> None:
        entry = two_hosts(queues)
        deliver(queues, HOST)
        assert queues.queued_for(HOST) == [] and queues.queued_for("other.example") == [entry]
        deliver(queues, "other.example")
        assert queues.queued_for("other.example") == []
        assert queues._by_host == {HOST: {}, "other.example": {}}
        assert queues.entries == {}

    def test_the_order_is_oldest_first_whatever_the_order_added(
            self, queues: DeliveryQueues, destination: FakeDestination) -> None:
        for mid in (5, 2, 9, 1):
            queue_entry(queues, mid, 0)
        deliver(queues)
        assert [s.mid for s in destination.sent] == [1, 2, 5, 9]
