"""Settlement on the manager (`manager.releases`) and its CPQ rescan notices (`manager.handler`).

A real SQLite quarantine store, spool, delivery queues (workers not started)
and mail_logs: a release spools the CPQ `release` transfer for
`the.cpq.release.host`; a deletion drops the message; copies go to their own
address; an outbreak rescan notice releases, deletes or extends.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import delete

from pvoq.config.model import THE_CPQ_RELEASE_HOST, Config
from pvoq.cpq import replies as cpq_replies
from pvoq.cpq.transfer import (
    Origin,
    Outcome,
    QuarantineTransfer,
    ReceiptOutcome,
    ReleaseReceipt,
    ReleaseReceipts,
    ReleaseTransfer,
    RescanAction,
    RescanNotice,
    Transfer,
)
from pvoq.delivery.queue import DeliveryQueues, Destination
from pvoq.maillog import IdAllocator, MailLog
from pvoq.manager.handler import QuarantineHandler
from pvoq.manager.releases import Releases, release_transfer_id
from pvoq.quarantine.arrivals import INLINE_BODY_MAX
from pvoq.quarantine.roles import ADMIN, Caller
from pvoq.quarantine.schema import message_bodies
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.settings import EarlyRelease, QuarantineSettings, merge_settings
from pvoq.quarantine.store import DELETED, RELEASED, QuarantineStore
from pvoq.smtp.server import MessageInfo, PvoqEnvelope, PvoqSession, ServerContext
from pvoq.spool.store import QUEUED, Spool

CALLER = Caller("admin", "test", ADMIN)
SERIAL = "SN-M"
_transfers = itertools.count(1)


def transfer_meta(*quarantines: str,
                  recipients: tuple[str, ...] = ("bob@example.com",)) -> dict[str, Any]:
    """CPQ metadata of a quarantine transfer from gw1.example.com held in *quarantines*."""
    return {
        "v": 1, "kind": "quarantine", "transfer_id": f"transfer-{next(_transfers):08d}",
        "origin": {"hostname": "gw1.example.com", "serial": "GW-SN", "mid": 42},
        "sender": "alice@example.org",
        "recipients": [{"rid": i, "address": a} for i, a in enumerate(recipients)],
        "quarantines": [{"name": n, "reason": f"content filter:{n.lower()}_rule",
                         "stage": "content_filters"} for n in quarantines],
        "received": 1700000000.0, "size": 0,
    }


class Rig:
    def __init__(self, root: Path, inline_max: int = INLINE_BODY_MAX) -> None:
        settings = merge_settings([
            QuarantineSettings("Policy", default_action="release",
                               early_release=EarlyRelease(subject_tag="[EARLY]")),
            QuarantineSettings("Hold", default_action="delete")])
        self.store = QuarantineStore(f"sqlite:///{root / 'q.db'}", root / "bodies",
                                     settings=settings, inline_max=inline_max)
        self.maillog = MailLog(root / "logs", appliance="manager m.test", serial=SERIAL)
        self.spool = Spool(root / "spool")
        self.ids = IdAllocator(root / "ids.json")
        self.queues = DeliveryQueues(spool=self.spool, maillog=self.maillog,
                                     destination_for=self.nowhere, retry_min_s=60,
                                     retry_max_s=3600)
        self.releases = Releases(store=self.store, spool=self.spool, queues=self.queues,
                                 ids=self.ids, maillog=self.maillog, serial_number=SERIAL)
        self.service = QuarantineService(self.store, self.releases, self.maillog.info)

    def nowhere(self, host: str) -> Destination:
        raise AssertionError("the workers are not started in these tests")

    def put(self, mid: int, *quarantines: str,
            recipients: tuple[str, ...] = ("bob@example.com",)) -> dict[str, Any]:
        meta = transfer_meta(*quarantines, recipients=recipients)
        body = b"From: alice@example.org\r\nSubject: numbers\r\n\r\nQ3\r\n"
        self.store.add(mid=mid, meta=meta, body=body, origin_ip="10.0.0.1", subject="numbers")
        return meta

    def lines(self) -> list[str]:
        self.maillog.flush()
        return [x.split(" ", 5)[-1] for x in self.maillog.path.read_text().splitlines()]

    def close(self) -> None:
        self.spool.close()
        self.maillog.close()
        self.store.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.close()


def logged(rig: Rig, text: str) -> bool:
    return any(text in line for line in rig.lines())


class TestSettle:
    def test_a_release_spools_the_release_transfer(self, rig: Rig) -> None:
        meta = rig.put(7, "Policy", recipients=("bob@example.com", "carol@example.com"))
        assert rig.service.act(CALLER, "release", 7).ok
        entry = rig.queues.entries[7]
        assert entry.state == QUEUED and entry.sender == "alice@example.org"
        assert [(r.rid, r.address, r.host) for r in entry.recipients] == [
            (0, "bob@example.com", THE_CPQ_RELEASE_HOST),
            (1, "carol@example.com", THE_CPQ_RELEASE_HOST)]
        cpq = entry.meta["cpq"]
        assert entry.meta["gateway"] == "gw1.example.com"
        assert cpq["kind"] == "release" and cpq["transfer_id"] == release_transfer_id(
            {"id": 7, "transfer_id": meta["transfer_id"]})
        assert cpq["origin"] == meta["origin"] and cpq["recipients"] == meta["recipients"]
        assert cpq["release"] == {"entry": 7, "stages": ["content_filters"],
                                  "quarantines": ["Policy"]}
        spooled = rig.spool.get(7)
        assert spooled is not None and spooled.meta == entry.meta
        record = rig.store.get(7)
        assert record is not None and record["state"] == RELEASED
        assert logged(rig, "MID 7 released from all quarantines")
        assert logged(rig, 'MID 7 released from quarantine "Policy" (manual) t=')

    def test_an_early_release_applies_the_quarantine_options(self, rig: Rig) -> None:
        rig.put(8, "Policy")
        rig.releases.settle(8, RELEASED, how="manual", names=("Policy",))
        assert b"Subject: [EARLY] numbers" in rig.spool.read_body(8)
        assert rig.releases.early_release(("Policy",)) == [EarlyRelease(subject_tag="[EARLY]")]
        assert rig.releases.early_release(("Hold",)) == []

    def test_an_expired_release_is_not_an_early_one(self, rig: Rig) -> None:
        rig.put(9, "Policy")
        rig.releases.settle(9, RELEASED, how="expired", names=("Policy",))
        body = rig.spool.read_body(9)
        assert b"Subject: numbers" in body and b"[EARLY]" not in body
        assert rig.queues.entries[9].size == len(body)
        assert logged(rig, 'MID 9 released from quarantine "Policy" (expired)')

    def test_a_deletion_drops_the_message(self, rig: Rig) -> None:
        rig.put(10, "Hold")
        assert rig.service.act(CALLER, "delete", 10).ok
        assert 10 not in rig.queues.entries and rig.spool.get(10) is None
        record = rig.store.get(10)
        assert record is not None and record["state"] == DELETED
        assert logged(rig, 'MID 10 deleted from quarantine "Hold" (manual) t=')
        assert not logged(rig, "MID 10 released from all quarantines")

    def test_a_copy_goes_to_its_own_address_under_a_new_mid(self, rig: Rig) -> None:
        rig.put(11, "Policy")
        copy_mid = rig.releases.send_copy(11, "audit@example.com")
        assert copy_mid != 11
        entry = rig.queues.entries[copy_mid]
        assert [(r.rid, r.address) for r in entry.recipients] == [(0, "audit@example.com")]
        assert entry.meta["cpq"]["transfer_id"] == f"r-{SERIAL}-{copy_mid}"
        assert entry.meta["cpq"]["release"]["entry"] == copy_mid
        assert entry.meta["cpq"]["release"]["copy_of"] == 11  # the gateway logs a copy
        assert 11 not in rig.queues.entries  # the original stays held

    def test_settle_many_drains_in_the_background(self, rig: Rig) -> None:
        for mid in (20, 21, 22):
            rig.put(mid, "Hold")

        async def main() -> None:
            rig.service.act_many(CALLER, "delete", [20, 21, 22])
            await asyncio.sleep(0.05)
            await rig.releases.stop()
        asyncio.run(main())
        for mid in (20, 21, 22):
            assert logged(rig, f'MID {mid} deleted from quarantine "Hold"')
            record = rig.store.get(mid)
            assert record is not None and record["state"] == DELETED


    def test_a_drained_chunk_shares_one_spool_commit_and_one_transaction(
            self, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
        for mid in range(30, 36):
            rig.put(mid, "Policy")
        rig.put(36, "Hold")
        finished: list[list[int]] = []
        real = rig.store.finish_many
        monkeypatch.setattr(rig.store, "finish_many",
                            lambda settled, **kw: (finished.append([m for m, _ in settled]),
                                                   real(settled, **kw))[1])

        async def main() -> None:
            rig.service.act_many(CALLER, "release", list(range(30, 36)))
            rig.service.act_many(CALLER, "delete", [36])
            for _ in range(200):
                if 36 in {m for chunk in finished for m in chunk}:
                    break
                await asyncio.sleep(0.01)
            await rig.releases.stop()
        asyncio.run(main())
        assert finished == [list(range(30, 37))]  # one transaction for the whole chunk
        for mid in range(30, 36):
            assert rig.spool.get(mid) is not None and mid in rig.queues.entries
            assert logged(rig, f"MID {mid} released from all quarantines")
            assert logged(rig, f'MID {mid} released from quarantine "Policy" (manual)')
            assert rig.store.get(mid)["state"] == RELEASED  # type: ignore[index]
        assert rig.store.get(36)["state"] == DELETED  # type: ignore[index]
        assert sorted(p.name for p in rig.store.bodies.iterdir()) == []

    def test_a_chunk_reads_and_records_in_a_worker_thread_not_on_the_loop(
            self, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
        """The database reads, the body reads and the settlement's transaction of a chunk
        run in a worker thread: the event loop keeps serving CPQ sessions meanwhile."""
        for mid in (50, 51, 52):
            rig.put(mid, "Policy")
        where: dict[str, set[str]] = {}
        for name in ("get_many", "read_body", "finish_many"):
            real = getattr(rig.store, name)

            def spy(*args: Any, _name: str = name, _real: Any = real, **kw: Any) -> Any:
                where.setdefault(_name, set()).add(threading.current_thread().name)
                return _real(*args, **kw)
            monkeypatch.setattr(rig.store, name, spy)

        async def main() -> None:
            rig.service.act_many(CALLER, "release", [50, 51, 52])
            for _ in range(500):
                if rig.store.unsettled() == [] and "finish_many" in where:
                    break
                await asyncio.sleep(0.01)
            await rig.releases.stop()
        asyncio.run(main())
        assert set(where) == {"get_many", "read_body", "finish_many"}
        assert all(threading.main_thread().name not in names for names in where.values())
        for mid in (50, 51, 52):
            assert mid in rig.queues.entries and rig.spool.get(mid) is not None
            assert logged(rig, f'MID {mid} released from quarantine "Policy" (manual)')

    def test_a_message_that_cannot_settle_stays_alone_for_recovery(self, rig: Rig) -> None:
        for mid in (40, 41, 42):
            rig.put(mid, "Policy")
        with rig.store.engine.begin() as conn:  # its body is gone: it cannot be released
            assert conn.execute(delete(message_bodies).where(
                message_bodies.c.message_id == 41)).rowcount == 1

        async def main() -> None:
            rig.service.act_many(CALLER, "release", [40, 41, 42])
            for _ in range(200):
                if rig.store.get(42)["state"] == RELEASED:  # type: ignore[index]
                    break
                await asyncio.sleep(0.01)
            await rig.releases.stop()
        asyncio.run(main())
        assert rig.store.get(40)["state"] == RELEASED  # type: ignore[index]
        assert rig.store.get(42)["state"] == RELEASED  # type: ignore[index]
        assert rig.store.get(41)["state"] == "settling"  # type: ignore[index]
        assert logged(rig, "MID 41 settlement failed, left for recovery")
        assert rig.store.unsettled() == [41]


class Session:
    peer_certificate = None
    peer_ip = "10.0.0.1"
    icid = 1


class TestRescanNotice:
    def handler(self, rig: Rig) -> QuarantineHandler:
        context = ServerContext(rig.maillog, rig.ids, "m.test")
        return QuarantineHandler(context, config=lambda: cast(Config, None),
                                 service=rig.service, cpq_suspended=lambda: False)

    def notice(self, quarantined: dict[str, Any], action: str, *, rescanned_at: float = 0.0,
               retention_s: float | None = None) -> RescanNotice:
        return RescanNotice(transfer_id=f"n-{action}",
                            quarantine_transfer_id=quarantined["transfer_id"],
                            origin=Origin.from_json(quarantined["origin"]), quarantine="Policy",
                            reason="rules v2", action=RescanAction(action),
                            rescanned_at=rescanned_at, retention_s=retention_s)

    def test_no_such_message(self, rig: Rig) -> None:
        reply = self.handler(rig).rescan_notice(
            cast(PvoqSession, Session()), self.notice({"transfer_id": "t-none", "origin": {
                "hostname": "gw1.example.com", "serial": "GW-SN", "mid": 5}}, "release"))
        assert reply == "250 2.0.0 Ok: notice n-release noted, no such message" == \
            cpq_replies.NOTICE_NO_SUCH_MESSAGE.format(transfer_id="n-release")
        assert logged(rig, "Outbreak rescan notice n-release from gw1.example.com for ESA MID 5:"
                           " no such message here, nothing to do")

    def test_release_settles_the_message(self, rig: Rig) -> None:
        quarantined = rig.put(30, "Policy")
        reply = self.handler(rig).rescan_notice(cast(PvoqSession, Session()),
                                                self.notice(quarantined, "release"))
        assert reply == "250 2.0.0 Ok: notice n-release: MID 30 release done" == \
            cpq_replies.NOTICE_DONE.format(transfer_id="n-release", mid=30, action="release")
        assert 30 in rig.queues.entries
        assert logged(rig, 'MID 30 released from quarantine "Policy" (rescanned)')

    def test_extend_moves_the_scheduled_exit_later_only(self, rig: Rig) -> None:
        quarantined = rig.put(31, "Policy")
        record = rig.store.get(31)
        assert record is not None
        exit_at = float(record["quarantines"][0]["scheduled_exit"])
        handler = self.handler(rig)
        earlier = self.notice(quarantined, "extend", rescanned_at=exit_at - 100, retention_s=50)
        assert handler.rescan_notice(cast(PvoqSession, Session()), earlier) == \
            "250 2.0.0 Ok: notice n-extend: MID 31 extend done" == \
            cpq_replies.NOTICE_DONE.format(transfer_id="n-extend", mid=31, action="extend")
        later = self.notice(quarantined, "extend", rescanned_at=exit_at, retention_s=3600)
        handler.rescan_notice(cast(PvoqSession, Session()), later)
        record = rig.store.get(31)
        assert record is not None
        assert float(record["quarantines"][0]["scheduled_exit"]) == pytest.approx(exit_at + 3600)
        assert logged(rig, 'MID 31 scheduled exit in quarantine "Policy" extended to')


class TestStore:
    """`QuarantineHandler.store`: the typed transfer the listener decoded, or a refusal."""

    GATEWAY_CERT = {"subject": ((("commonName", "gw1.example.com"),),
                                (("organizationalUnitName", "gateway"),))}

    def handler(self, rig: Rig, registered: bool = True) -> QuarantineHandler:
        context = ServerContext(rig.maillog, rig.ids, "m.test")
        pvo = SimpleNamespace(gateway=lambda name: object() if registered else None)
        return QuarantineHandler(context, config=lambda: cast(Config, SimpleNamespace(pvo=pvo)),
                                 service=rig.service, cpq_suspended=lambda: False)

    def store(self, handler: QuarantineHandler, transfer: Transfer, mid: int = 50,
              cert: dict[str, Any] | None = GATEWAY_CERT) -> str:
        session = Session()
        session.peer_certificate = cert
        envelope = PvoqEnvelope()
        envelope.mid = mid
        return asyncio.run(handler.store(cast(PvoqSession, session), envelope, transfer,
                                         b"Subject: numbers\r\n\r\nQ3\r\n",
                                         MessageInfo(subject="numbers")))

    def test_stored_once_with_its_metadata(self, rig: Rig) -> None:
        meta = {**transfer_meta("Policy"), "future_field": [1]}
        transfer = QuarantineTransfer.from_json(meta)
        handler = self.handler(rig)
        assert self.store(handler, transfer) == "250 2.0.0 Ok: Message 50 accepted"
        record = rig.store.get(50)
        assert record is not None and record["meta"] == meta
        assert self.store(handler, transfer, mid=51) == cpq_replies.ALREADY_STORED.format(
            transfer_id=meta["transfer_id"], mid=50)
        assert logged(rig, 'MID 50 quarantined to "Policy" (content filter:policy_rule)')

    def test_refusals(self, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
        quarantine = QuarantineTransfer.from_json(transfer_meta("Policy"))
        release = ReleaseTransfer.from_json({**transfer_meta("Policy"), "kind": "release",
                                             "release": {"entry": 1, "stages": []}})
        handler = self.handler(rig)
        assert self.store(handler, release) == str(cpq_replies.QUARANTINE_TRANSFERS_ONLY)
        assert self.store(handler, quarantine, cert=None) == \
            cpq_replies.CERTIFICATE_MISMATCH.format(origin="gw1.example.com")
        assert self.store(self.handler(rig, registered=False), quarantine) == \
            cpq_replies.UNKNOWN_GATEWAY.format(origin="gw1.example.com")
        rig.service.quota_bytes = 2**20  # with no quota there is no room to check
        monkeypatch.setattr(rig.service, "make_room", lambda size, names: False)
        assert self.store(handler, quarantine) == str(cpq_replies.SPACE_FULL) == \
            "452 4.3.1 Quarantine space full, try again later"
        assert rig.store.get(50) is None


class TestReleaseReceipt:
    """Release receipts arriving together are checked and recorded in a worker thread: the
    event loop never reads a message's whole record for them."""

    def receipt(self, mid: int, *, gateway: str = "gw1.example.com",
                tid: str = "d-GW-SN-7-0001") -> ReleaseReceipt:
        return ReleaseReceipt(
            transfer_id=tid, origin=Origin(gateway, "GW-SN", 7),
            release_id=f"r-{mid}-0123456789abcdef", entry=mid,
            outcomes=(ReceiptOutcome(0, "bob@example.com", Outcome.DELIVERED, "mx.example.com",
                                     "250 2.0.0 Ok", 1_800_000_100.0),))

    def store_all(self, rig: Rig, receipts: list[ReleaseReceipt]) -> list[str]:
        handler = TestStore().handler(rig)

        async def main() -> list[str]:
            calls = []
            for n, receipt in enumerate(receipts):
                session = Session()
                session.peer_certificate = TestStore.GATEWAY_CERT  # type: ignore[assignment]
                envelope = PvoqEnvelope()
                envelope.mid = 900 + n
                calls.append(handler.store(cast(PvoqSession, session), envelope, receipt,
                                           b"Subject: receipt\r\n\r\n",
                                           MessageInfo(subject="receipt")))
            return list(await asyncio.gather(*calls))
        return asyncio.run(main())

    def test_checked_and_recorded_together_without_reading_records(
            self, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
        for mid in (60, 61):
            rig.put(mid, "Policy")
        rig.store.add(mid=62, meta={**transfer_meta("Policy"),
                                    "origin": {"hostname": "gw2.example.com",
                                               "serial": "GW2", "mid": 5}},
                      body=b"Subject: x\r\n\r\nx\r\n", origin_ip="10.0.0.2", subject="x")
        assert rig.service.act(CALLER, "release", 60).ok
        assert rig.service.act(CALLER, "release", 61).ok

        def no_get(mid: int) -> None:
            raise AssertionError("a receipt read a whole record on the event loop")
        monkeypatch.setattr(rig.store, "get", no_get)
        asked: list[list[int]] = []
        real = rig.store.origin_hosts
        monkeypatch.setattr(rig.store, "origin_hosts",
                            lambda mids: (asked.append(sorted(mids)), real(mids))[1])
        replies = self.store_all(rig, [
            self.receipt(60, tid="d-1"), self.receipt(61, tid="d-2"),
            self.receipt(60, tid="d-3"),  # the same recipient again: known, not recorded
            self.receipt(99, tid="d-4"),  # no such message here
            self.receipt(62, tid="d-5")])  # came from gw2, reported by gw1
        assert replies == [
            cpq_replies.RECEIPT_RECORDED.format(transfer_id="d-1", mid=60),
            cpq_replies.RECEIPT_RECORDED.format(transfer_id="d-2", mid=61),
            cpq_replies.RECEIPT_KNOWN.format(transfer_id="d-3", mid=60),
            cpq_replies.RECEIPT_NO_SUCH_MESSAGE.format(transfer_id="d-4"),
            cpq_replies.RECEIPT_OTHER_GATEWAY.format(mid=62, origin="gw1.example.com")]
        assert asked == [[60, 60, 61, 62, 99]]  # one look-up for the receipts arriving together
        monkeypatch.undo()
        assert [(r["entry"], r["rid"], r["outcome"])
                for r in rig.service.receipts.of(60)["receipts"]] == [(60, 0, "delivered")]
        assert rig.service.receipts.of(62)["receipts"] == []
        assert logged(rig, "MID 60 release receipt d-1 from gw1.example.com (ESA MID 7): "
                           "RID 0 delivered to mx.example.com: '250 2.0.0 Ok'")
        assert logged(rig, "MID 60 duplicate release receipt d-3 from gw1.example.com")
        assert logged(rig, "Release receipt d-4 from gw1.example.com for MID 99: no such "
                           "message here")
        assert logged(rig, "release receipt d-5 from gw1.example.com for MID 62, which came "
                           "from gw2.example.com")


class TestReleaseReceipts:
    """Kind `release_receipts`: several receipts in one transfer, each checked, recorded
    and logged as if it came alone, in one batch; one reply counting them."""

    def bundle(self, *receipts: ReleaseReceipt) -> ReleaseReceipts:
        return ReleaseReceipts(transfer_id="b-GW-SN-0123456789ab",
                               origin=Origin("gw1.example.com", "GW-SN", 7),
                               receipts=receipts)

    def test_each_entry_recorded_once_the_bad_one_refused_the_rest_kept(
            self, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
        for mid in (60, 61):
            rig.put(mid, "Policy")
        rig.store.add(mid=62, meta={**transfer_meta("Policy"),
                                    "origin": {"hostname": "gw2.example.com",
                                               "serial": "GW2", "mid": 5}},
                      body=b"Subject: x\r\n\r\nx\r\n", origin_ip="10.0.0.2", subject="x")
        assert rig.service.act(CALLER, "release", 60).ok
        assert rig.service.act(CALLER, "release", 61).ok
        batches: list[int] = []
        real = rig.service.record_receipts
        monkeypatch.setattr(rig.service, "record_receipts",
                            lambda items: (batches.append(len(items)), real(items))[1])
        make = TestReleaseReceipt().receipt
        bundle = self.bundle(make(60, tid="d-1"), make(61, tid="d-2"),
                             make(60, tid="d-3"),  # the same recipient again: known
                             make(99, tid="d-4"),  # no such message here
                             make(62, tid="d-5"))  # came from gw2, reported by gw1
        reply = TestStore().store(TestStore().handler(rig), bundle)
        assert reply == cpq_replies.RECEIPTS_DONE.format(
            transfer_id="b-GW-SN-0123456789ab", recorded=2, known=1, unknown=1, refused=1)
        assert batches == [3]  # one transaction for the three about gw1's messages
        assert [(r["entry"], r["rid"]) for r in rig.service.receipts.of(60)["receipts"]] == [
            (60, 0)]
        assert [(r["entry"], r["rid"]) for r in rig.service.receipts.of(61)["receipts"]] == [
            (61, 0)]
        assert rig.service.receipts.of(62)["receipts"] == []
        assert logged(rig, "MID 60 release receipt d-1 from gw1.example.com (ESA MID 7): "
                           "RID 0 delivered to mx.example.com: '250 2.0.0 Ok'")
        assert logged(rig, "MID 61 release receipt d-2 from gw1.example.com (ESA MID 7)")
        assert logged(rig, "MID 60 duplicate release receipt d-3 from gw1.example.com")
        assert logged(rig, "Release receipt d-4 from gw1.example.com for MID 99: no such "
                           "message here")
        assert logged(rig, "release receipt d-5 from gw1.example.com for MID 62, which came "
                           "from gw2.example.com")
        # Sent again (no 250 reached the gateway): nothing recorded twice.
        again = TestStore().store(TestStore().handler(rig), bundle)
        assert again == cpq_replies.RECEIPTS_DONE.format(
            transfer_id="b-GW-SN-0123456789ab", recorded=0, known=3, unknown=1, refused=1)
        assert len(rig.service.receipts.of(60)["receipts"]) == 1

    def test_a_failed_recording_is_temporary_for_the_whole_transfer(
            self, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
        rig.put(60, "Policy")
        assert rig.service.act(CALLER, "release", 60).ok

        def broken(items: list[Any]) -> list[Any]:
            raise OSError("disk I/O error")
        monkeypatch.setattr(rig.service, "record_receipts", broken)
        make = TestReleaseReceipt().receipt
        reply = TestStore().store(TestStore().handler(rig),
                                  self.bundle(make(60, tid="d-1"), make(60, tid="d-2")))
        assert reply == cpq_replies.RECEIPTS_FAILED.format(transfer_id="b-GW-SN-0123456789ab")
        assert logged(rig, "not all recorded (OSError: disk I/O error)")

    def test_the_manager_offers_the_ehlo_keyword_after_starttls_only(self, rig: Rig) -> None:
        handler = TestStore().handler(rig)
        base = ["250-m.test", "250-PIPELINING", "250 HELP"]

        async def ehlo(tls: bool) -> list[str]:
            session = SimpleNamespace(ssl={"x": 1} if tls else None, peer_certificate=None,
                                      icid=1, peer_ip="10.0.0.1", host_name=None)
            return await handler.handle_EHLO(cast(Any, None), cast(Any, session), None,
                                             "gw1.example.com", list(base))
        assert "250-XCPQ-RECEIPTS 1000" in asyncio.run(ehlo(True))
        assert not any("RECEIPTS" in line for line in asyncio.run(ehlo(False)))
