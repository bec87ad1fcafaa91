"""The gateway's release receipts: made when a released message's delivery ends, and
durable in the spool log before that outcome is (a crash can repeat a delivery, never
lose its receipt)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pvoq.config.model import THE_CPQ_HOST
from pvoq.cpq.transfer import ReleaseReceipt, parse_transfer
from pvoq.delivery.queue import DeliveryQueues, Destination, Final, Target
from pvoq.gateway.receipts import Receipts, build_receipt, receipt_id
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.client import Reply
from pvoq.spool.log import ENTRY, PUT, REMOVE, decode
from pvoq.spool.store import QUEUED, Entry, Recipient, Spool

CONFIG: Any = SimpleNamespace(hostname="gw1.example.com", serial_number="GW-SN")
BODY = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


def released(mid: int = 23502, *addresses: str) -> Entry:
    rcpts = [Recipient(i, a, host="example.com")
             for i, a in enumerate(addresses or ("bob@example.com",))]
    return Entry(mid=mid, sender="alice@example.org", recipients=rcpts, received=1.0,
                 size=len(BODY), state=QUEUED, meta={"released": {
                     "origin_mid": 7, "manager_mid": 1001, "resume_after": None,
                     "transfer_id": "r-1001-0123456789abcdef", "manager": "mgr2.example.com",
                     "copy_of": None}})


class Answering(Destination):
    """Answers each recipient by its address: `reject...` 550, anything else 250."""

    name = "example.com"

    def target(self, entry: Entry) -> Target | None:
        return Target("mx.example.com", 25)

    def connection(self) -> Any:
        return self

    dcid = 9
    in_flight = 1  # one transaction at a time

    async def open(self, host: str, port: int) -> None:
        pass

    async def send(self, *, mid: int, sender: str, recipients: Sequence[tuple[int, str]],
                   body: bytes, **kwargs: Any) -> dict[int, Reply]:
        return {rid: Reply(550, "5.1.1 No such user") if a.startswith("reject")
                else Reply(250, "2.0.0 Ok: queued") for rid, a in recipients}

    async def close(self) -> None:
        pass


@pytest.fixture
def maillog(tmp_path: Path) -> Iterator[MailLog]:
    log = MailLog(tmp_path / "logs", appliance="test", serial="SN")
    yield log
    log.close()


def log_records(directory: Path) -> list[tuple[int, int]]:
    """(kind, MID) of every record in the spool log, in the order written."""
    found = []
    for seg in sorted(directory.glob("log-*.seg")):
        data, offset = seg.read_bytes(), 0
        while (item := decode(data, offset)) is not None:
            found.append((item[0].kind, item[0].mid))
            offset = item[2]
    return found


class TestBuildReceipt:
    def test_only_released_mail_downstream_gets_a_receipt(self) -> None:
        entry = released()
        done = Final(entry.recipients[0], "delivered", "mx.example.com", "250 ok")
        assert build_receipt(CONFIG, Entry(1, "", [Recipient(0, "x@y")], 1.0, 1), [done]) is None
        back = Recipient(0, "bob@example.com", host=THE_CPQ_HOST)  # quarantined anew
        assert build_receipt(CONFIG, entry, [Final(back, "delivered", "mgr", "250")]) is None
        made = build_receipt(CONFIG, entry, [done], now=lambda: 5.0)
        assert made is not None
        assert (made.entry, made.release_id, made.manager) == (
            1001, "r-1001-0123456789abcdef", "mgr2.example.com")
        assert made.origin.hostname == "gw1.example.com" and made.origin.mid == 23502
        assert parse_transfer(made.to_json()) == made

    def test_the_id_is_the_same_for_the_same_recipients(self) -> None:
        """A delivery repeated after a crash makes a receipt the manager already has."""
        entry = released(23502, "a@example.com", "b@example.com")
        assert receipt_id("GW-SN", entry, [1, 0]) == receipt_id("GW-SN", entry, [0, 1])
        assert receipt_id("GW-SN", entry, [0]) != receipt_id("GW-SN", entry, [1])
        assert receipt_id("GW-SN", entry, [0]).startswith("d-GW-SN-23502-")

    def test_a_multiline_reply_becomes_one_line(self) -> None:
        entry = released()
        made = build_receipt(CONFIG, entry, [Final(entry.recipients[0], "bounced", "mx",
                                                   "550 5.1.1 no\r\n550 such user")])
        assert made is not None and made.outcomes[0].reply == "550 5.1.1 no 550 such user"


class TestDurability:
    def test_the_receipt_is_written_before_the_outcome_and_queued_once_durable(
            self, tmp_path: Path, maillog: MailLog) -> None:
        async def scenario() -> tuple[list[tuple[int, int]], list[Entry]]:
            spool = Spool(tmp_path / "spool")
            queues = DeliveryQueues(spool=spool, maillog=maillog,
                                    destination_for=lambda host: Answering(),
                                    retry_min_s=60, retry_max_s=3600)
            receipts = Receipts(config=lambda: CONFIG, spool=spool,
                                ids=IdAllocator(tmp_path / "ids.json"), queues=queues,
                                maillog=maillog)
            queues.on_final = receipts.final
            entry = released(23502, "bob@example.com", "reject@example.com")
            spool.put(entry, BODY)
            queues.add(entry)
            await queues.deliver_host("example.com", [(entry, list(entry.recipients))])
            spool.flush()
            await asyncio.sleep(0.05)  # the durable-callback runs on the loop
            for _ in range(100):
                if any(e.meta.get("receipt_for") for e in queues.entries.values()):
                    break
                await asyncio.sleep(0.02)
            waiting = [e for e in queues.entries.values() if e.meta.get("receipt_for")]
            spool.close()
            return log_records(tmp_path / "spool"), waiting

        records, waiting = asyncio.run(scenario())
        (made,) = waiting
        assert made.recipients[0].host == THE_CPQ_HOST and made.sender == ""
        receipt = parse_transfer(made.meta["cpq"])
        assert isinstance(receipt, ReleaseReceipt)
        assert [(o.rid, o.outcome, o.reply.split()[0]) for o in receipt.outcomes] == [
            (0, "delivered", "250"), (1, "bounced", "550")]
        assert made.meta["manager"] == "mgr2.example.com"
        put_receipt = records.index((PUT, made.mid))
        outcome = next(i for i, (kind, mid) in enumerate(records)
                       if mid == 23502 and kind in (ENTRY, REMOVE))
        assert put_receipt < outcome, records

    def test_an_expired_release_gets_an_expired_receipt(self, tmp_path: Path,
                                                        maillog: MailLog) -> None:
        """Older than the maximum time in queue: bounced, and the receipt says `expired`."""
        async def scenario() -> list[Entry]:
            spool = Spool(tmp_path / "spool")
            queues = DeliveryQueues(spool=spool, maillog=maillog,
                                    destination_for=lambda host: Answering(),
                                    retry_min_s=60, retry_max_s=3600,
                                    max_queue_lifetime_s=10.0, clock=lambda: 1000.0)
            receipts = Receipts(config=lambda: CONFIG, spool=spool,
                                ids=IdAllocator(tmp_path / "ids.json"), queues=queues,
                                maillog=maillog)
            queues.on_final = receipts.final
            entry = released()
            entry.recipients[0].last_error = "451 4.3.0 try later"
            spool.put(entry, BODY)
            queues.add(entry)
            queues.expire("example.com")
            spool.flush()
            for _ in range(100):
                made = [e for e in queues.entries.values() if e.meta.get("receipt_for")]
                if made:
                    break
                await asyncio.sleep(0.02)
            spool.close()
            return made

        (made,) = asyncio.run(scenario())
        receipt = parse_transfer(made.meta["cpq"])
        assert isinstance(receipt, ReleaseReceipt)
        (outcome,) = receipt.outcomes
        assert (outcome.outcome, outcome.host) == ("expired", "example.com")
        assert outcome.reply.startswith("5.4.7 - Delivery expired (message too old) 451")
