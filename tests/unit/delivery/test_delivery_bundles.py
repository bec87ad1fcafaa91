"""Several entries in one transaction (`delivery.queue.Bundler`): each gets the bundle's
reply as its own; a peer that declines gets them one by one; a failure defers each."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pvoq.delivery.queue import Bundle, Bundler, DeliveryQueues, Destination, Item, Target
from pvoq.maillog import MailLog
from pvoq.smtp.client import DeliveryError, Reply
from pvoq.spool.store import PENDING, Entry, Recipient, Spool

HOST = "the.cpq.host"
START = 1_700_000_000.0
BODY = b"Subject: receipt\r\n\r\nx\r\n"


class Conn:
    def __init__(self, dest: Dest) -> None:
        self.dest = dest
        self.dcid = 70
        self.in_flight = 1  # one transaction at a time
        self.bundles = dest.bundles

    async def open(self, host: str, port: int) -> None:
        self.dest.opened += 1

    async def send(self, *, mid: int, sender: str, recipients: Sequence[tuple[int, str]],
                   body: Any, extra: Sequence[str] = (), start_note: str = "",
                   done_note: str = "") -> dict[int, Reply]:
        if self.dest.drop:
            raise DeliveryError("connection lost during delivery: reset")
        self.dest.sent.append((mid, list(extra)))
        return {rid: self.dest.reply for rid, _ in recipients}

    async def close(self) -> None:
        pass


class Dest(Destination):
    name = HOST
    holds_on_permanent_failure = True

    def __init__(self) -> None:
        self.bundles = True
        self.drop = False
        self.reply = Reply(250, "2.0.0 Ok: receipts b-1: 3 recorded")
        self.sent: list[tuple[int, list[str]]] = []
        self.opened = 0

    def target(self, entry: Entry) -> Target | None:
        return Target("127.0.0.1", 7025, extra=[f"XCPQ META {entry.mid}"],
                      start_note="to Centralized Policy Quarantine",
                      done_note="(centralized policy quarantine)")

    def connection(self) -> Any:
        return Conn(self)


class AllTogether(Bundler):
    def groups(self, items: list[Item]) -> list[list[Item]]:
        return [items]

    def bundle(self, conn: Any, group: list[Item]) -> Bundle | None:
        if not conn.bundles:
            return None
        return Bundle(items=group, sender="", recipient="r@pvoq.invalid", body=b"x\r\n",
                      target=Target("127.0.0.1", 7025,
                                    extra=["XCPQ META " + ",".join(str(e.mid) for e, _, _ in
                                                                   group)],
                                    start_note="to Centralized Policy Quarantine",
                                    done_note="(centralized policy quarantine)"))


@pytest.fixture
def maillog(tmp_path: Path) -> Iterator[MailLog]:
    log = MailLog(tmp_path / "logs", appliance="test", serial="SN")
    yield log
    log.close()


@pytest.fixture
def dest() -> Dest:
    return Dest()


@pytest.fixture
def queues(tmp_path: Path, maillog: MailLog, dest: Dest) -> DeliveryQueues:
    return DeliveryQueues(spool=Spool(tmp_path / "spool"), maillog=maillog,
                          destination_for=lambda name: dest, retry_min_s=60.0,
                          retry_max_s=3600.0, clock=lambda: START, bundler=AllTogether())


def queue(queues: DeliveryQueues, *mids: int) -> list[Entry]:
    made = []
    for mid in mids:
        entry = Entry(mid=mid, sender="", recipients=[Recipient(0, "r@pvoq.invalid", host=HOST)],
                      received=START - 100 + mid, size=len(BODY))
        queues.spool.put(entry, BODY)
        queues.add(entry)
        made.append(entry)
    return made


def deliver(queues: DeliveryQueues) -> None:
    due, _ = queues._due(HOST)
    asyncio.run(queues.deliver_host(HOST, due))
    queues.spool.flush()


def log_text(maillog: MailLog) -> str:
    maillog.flush()
    return "".join(p.read_text() for p in sorted(maillog.directory.glob("*")))


def test_one_transaction_for_the_group_each_entry_done_and_logged(
        queues: DeliveryQueues, dest: Dest, maillog: MailLog) -> None:
    queue(queues, 11, 12, 13)
    deliver(queues)
    assert dest.sent == [(11, ["XCPQ META 11,12,13"])]
    assert dest.opened == 1
    assert queues.entries == {}
    assert all(queues.spool.get(mid) is None for mid in (11, 12, 13))
    text = log_text(maillog)
    for mid in (12, 13):
        assert (f"Delivery start DCID 70 MID {mid} to RID [0] to Centralized Policy "
                f"Quarantine (with MID 11)") in text
        assert f"MID {mid} RID [0] Response '2.0.0 Ok: receipts b-1: 3 recorded'" in text
        assert (f"Message done DCID 70 MID {mid} to RID [0] (centralized policy "
                "quarantine)") in text
    for mid in (11, 12, 13):
        assert f"Message finished MID {mid} done" in text


def test_a_peer_that_declines_gets_them_one_by_one(queues: DeliveryQueues, dest: Dest) -> None:
    dest.bundles = False
    queue(queues, 11, 12)
    deliver(queues)
    assert dest.sent == [(11, ["XCPQ META 11"]), (12, ["XCPQ META 12"])]
    assert queues.entries == {}


def test_a_temporary_refusal_keeps_every_entry_for_a_retry(
        queues: DeliveryQueues, dest: Dest) -> None:
    dest.reply = Reply(451, "4.3.0 Receipts b-1 not recorded, try again later")
    queue(queues, 11, 12)
    deliver(queues)
    for mid in (11, 12):
        kept = queues.spool.get(mid)
        assert kept is not None and kept.recipients[0].status == PENDING
        assert kept.recipients[0].last_error.startswith("451 ")
        assert queues.entries[mid].recipients[0].next_attempt > START


def test_a_link_lost_during_the_bundle_defers_each_entry(
        queues: DeliveryQueues, dest: Dest, maillog: MailLog) -> None:
    dest.drop = True
    queue(queues, 11, 12)
    deliver(queues)
    assert set(queues.entries) == {11, 12}
    for mid in (11, 12):
        kept = queues.spool.get(mid)
        assert kept is not None and kept.recipients[0].status == PENDING
        assert f"Delayed: DCID 70 MID {mid} to RID [0] - connection lost" in log_text(maillog)


def test_a_lone_entry_goes_at_once_those_due_meanwhile_together_in_the_next_pass(
        queues: DeliveryQueues, dest: Dest) -> None:
    """Group commit: nothing waits for a timer; what becomes due while a transaction is on
    the wire waits for its reply and goes in one transaction after it."""
    answered = asyncio.Event()
    sending = Conn.send

    async def slow_send(self: Conn, **kwargs: Any) -> dict[int, Reply]:
        if not dest.sent:  # the first transaction stays on the wire until told
            dest.sent.append((kwargs["mid"], list(kwargs["extra"])))
            await answered.wait()
            return {rid: dest.reply for rid, _ in kwargs["recipients"]}
        return await sending(self, **kwargs)

    async def scenario() -> None:
        Conn.send = slow_send  # type: ignore[method-assign]
        try:
            queues.start()
            queue(queues, 11)
            for _ in range(200):
                if dest.sent:
                    break
                await asyncio.sleep(0.01)
            assert dest.sent == [(11, ["XCPQ META 11"])]  # at once, alone
            queue(queues, 12, 13, 14)
            await asyncio.sleep(0.05)
            assert len(dest.sent) == 1  # waiting for the reply in flight
            answered.set()
            for _ in range(200):
                if not queues.entries:
                    break
                await asyncio.sleep(0.01)
            await queues.stop()
        finally:
            Conn.send = sending  # type: ignore[method-assign]

    asyncio.run(scenario())
    assert dest.sent == [(11, ["XCPQ META 11"]), (12, ["XCPQ META 12,13,14"])]
