"""Release receipts and dry rescans on the manager: recorded once, shown escaped, audited.

Every test runs on SQLite and on a real PostgreSQL server; time is a controlled clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from qhelpers import RecordingSettler, put
from sqlalchemy import event

from pvoq.cpq.transfer import Origin, Outcome, ReceiptOutcome, ReleaseReceipt
from pvoq.errors import Conflict, OperatorError
from pvoq.quarantine.receipts import printable
from pvoq.quarantine.roles import ADMIN, CUSTOM, OPERATOR, READONLY, Caller, PermissionDenied
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.store import HELD, QuarantineError, QuarantineStore

ALICE = Caller("alice", "10.0.0.5", ADMIN)


def receipt(mid: int, *outcomes: tuple[int, str, str], tid: str = "d-GW-SN-7-000000000001",
            copy_of: int | None = None) -> ReleaseReceipt:
    return ReleaseReceipt(
        transfer_id=tid, origin=Origin("gw1.example.com", "GW-SN", 7),
        release_id=f"r-{mid}-0123456789abcdef", entry=mid, copy_of=copy_of,
        outcomes=tuple(ReceiptOutcome(rid, f"rcpt{rid}@example.com", Outcome(outcome),
                                      "mx.example.com:2525", reply, 1_800_000_100.0)
                       for rid, outcome, reply in outcomes))


class FakeRescanner:
    """Stands in for the manager's CPQ client: a verdict, or an error naming the gateway."""

    def __init__(self, verdict: dict[str, Any] | None = None,
                 error: OperatorError | None = None) -> None:
        self.verdict, self.error = verdict, error
        self.asked: list[int] = []

    async def rescan(self, record: dict[str, Any], body: bytes) -> dict[str, Any]:
        self.asked.append(int(record["id"]))
        if self.error is not None:
            raise self.error
        assert self.verdict is not None
        return dict(self.verdict)


@pytest.fixture
def service(store: QuarantineStore, clock: Any) -> QuarantineService:
    return QuarantineService(store, RecordingSettler(store), lambda line: None, clock=clock)


def audit_of(service: QuarantineService, action: str) -> list[dict[str, Any]]:
    return [r for r in service.audit.tail(100) if r["action"] == action]


class TestReceipts:
    def test_released_then_delivered_is_one_line_with_the_reply(
            self, store: QuarantineStore, service: QuarantineService) -> None:
        mid = put(store, 1001, "Policy")
        assert service.act(ALICE, "release", mid).ok
        assert service.details(ALICE, mid)["release_history"] == [
            "released by alice at 2027-01-15T08:00:00Z; no receipt from the gateway yet"]
        recorded = service.record_receipt(receipt(mid, (0, "delivered", "250 2.0.0 Ok")),
                                          "10.1.2.1")
        assert recorded.new == (0,)
        assert service.details(ALICE, mid)["release_history"] == [
            "released by alice at 2027-01-15T08:00:00Z; delivered by gw1.example.com to "
            "mx.example.com:2525 for <rcpt0@example.com> at 2027-01-15T08:01:40Z: "
            "250 2.0.0 Ok"]
        (record,) = audit_of(service, "receipt")
        assert (record["actor"], record["origin"]) == ("gw1.example.com", "10.1.2.1")
        assert record["detail"]["outcomes"][0]["reply"] == "250 2.0.0 Ok"

    def test_a_receipt_is_recorded_once_per_recipient(
            self, store: QuarantineStore, service: QuarantineService) -> None:
        """A retried receipt, or another for a recipient already reported (a delivery
        repeated after a crash), adds no row and no audit record."""
        mid = put(store, 1001, "Policy", recipients=("a@example.com", "b@example.com"))
        first = receipt(mid, (0, "delivered", "250 ok"))
        assert service.record_receipt(first, "ip").new == (0,)
        assert service.record_receipt(first, "ip").new == ()
        again = receipt(mid, (0, "bounced", "550 no"), (1, "bounced", "550 no"),
                        tid="d-GW-SN-7-000000000002")
        recorded = service.record_receipt(again, "ip")
        assert (recorded.new, recorded.known) == ((1,), (0,))
        rows = service.details(ALICE, mid)["receipts"]
        assert [(r["rid"], r["outcome"]) for r in rows] == [(0, "delivered"), (1, "bounced")]
        assert len(audit_of(service, "receipt")) == 2

    def test_hostile_replies_are_shown_escaped_and_bounded(
            self, store: QuarantineStore, service: QuarantineService) -> None:
        mid = put(store, 1001, "Policy")
        service.act(ALICE, "release", mid)
        evil = "250 ok\x1b[2J\r\nInjected: line" + "z" * 600
        service.record_receipt(receipt(mid, (0, "delivered", evil)), "ip")
        (line,) = service.details(ALICE, mid)["release_history"]
        assert "\x1b" not in line and "\r" not in line and "\n" not in line
        assert "\\x1b[2J\\r\\nInjected: line" in line
        assert line.endswith("...")
        assert printable("a\tb") == "a\\tb"

    def test_a_copy_and_an_expiry_have_their_own_lines(
            self, store: QuarantineStore, service: QuarantineService) -> None:
        mid = put(store, 1001, "Policy")
        service.copy(ALICE, mid, "audit@example.com")
        copy_mid = 90001  # RecordingSettler's first copy
        service.record_receipt(receipt(copy_mid, (0, "expired", "5.4.7 - Delivery expired"),
                                       copy_of=mid), "ip")
        assert service.details(ALICE, mid)["release_history"] == [
            "copy MID 90001 to audit@example.com sent by alice at 2027-01-15T08:00:00Z; "
            "expired on gw1.example.com for <rcpt0@example.com> at 2027-01-15T08:01:40Z: "
            "5.4.7 - Delivery expired"]

    def test_a_receipt_and_its_audit_record_share_one_commit(
            self, store: QuarantineStore, service: QuarantineService) -> None:
        mid = put(store, 1001, "Policy")
        assert service.act(ALICE, "release", mid).ok
        commits: list[object] = []

        def committed(conn: object) -> None:
            commits.append(conn)

        event.listen(store.engine, "commit", committed)
        try:
            recorded = service.record_receipt(
                receipt(mid, (0, "delivered", "250 2.0.0 Ok")), "10.1.2.1")
        finally:
            event.remove(store.engine, "commit", committed)
        assert recorded.new == (0,) and len(commits) == 1
        assert len(audit_of(service, "receipt")) == 1
        assert service.audit.verify().ok

    def test_receipts_arriving_together_share_one_commit_and_fail_alone(
            self, store: QuarantineStore, service: QuarantineService) -> None:
        """`record_receipts`: one transaction for the batch (receipts and their audit
        records); a receipt that cannot be stored fails alone, the others are kept."""
        mids = [put(store, 1001 + i, "Policy") for i in range(3)]
        for mid in mids:
            assert service.act(ALICE, "release", mid).ok
        commits: list[object] = []

        def committed(conn: object) -> None:
            commits.append(conn)

        event.listen(store.engine, "commit", committed)
        try:
            results = service.record_receipts(
                [(receipt(m, (0, "delivered", "250 ok"), tid=f"d-GW-SN-7-{m:012d}"), "ip")
                 for m in mids])
        finally:
            event.remove(store.engine, "commit", committed)
        assert [r.new for r in results] == [(0,), (0,), (0,)]  # type: ignore[union-attr]
        assert len(commits) == 1
        assert len(audit_of(service, "receipt")) == 3

        bad = receipt(mids[0], (1, "delivered", "250 ok"), tid="d-GW-SN-7-000000000009")
        object.__setattr__(bad, "outcomes", (*bad.outcomes, None))  # cannot be stored
        again = service.record_receipts(
            [(bad, "ip"), (receipt(mids[1], (1, "bounced", "550 no")), "ip")])
        assert isinstance(again[0], Exception)
        assert again[1].new == (1,)  # type: ignore[union-attr]
        assert len(audit_of(service, "receipt")) == 4
        assert service.audit.verify().ok

    def test_a_bulk_release_notes_its_chunk_in_one_commit_and_keeps_earlier_notes(
            self, store: QuarantineStore, service: QuarantineService) -> None:
        """Releases noted together share one transaction (one commit, not one per
        message); a release noted before (another process, a retry) keeps its record."""
        mids = [put(store, 1001 + i, "Policy") for i in range(5)]
        service.receipts.released([(mids[2], mids[2])], "bob", "10.0.0.9", "manual")
        commits: list[object] = []

        def committed(conn: object) -> None:
            commits.append(conn)

        event.listen(store.engine, "commit", committed)
        try:
            service.receipts.released([(m, m) for m in mids], "alice", "10.0.0.5", "manual")
        finally:
            event.remove(store.engine, "commit", committed)
        assert len(commits) == 1
        for i, mid in enumerate(mids):
            who = "bob" if i == 2 else "alice"
            assert service.details(ALICE, mid)["release_history"] == [
                f"released by {who} at 2027-01-15T08:00:00Z; no receipt from the gateway yet"]


VERDICT = {"gateway": "gw1.example.com", "action": "quarantine", "reason": "",
           "unscannable": "", "verdicts": [{"stage": "antivirus", "quarantine": "Virus",
                                            "reason": "a/v verdict:VIRAL Eicar", "detail": ""}],
           "stages": [{"stage": "antivirus", "outcome": "quarantine", "hits": ["VIRAL"],
                       "misses": []}]}


class TestDryRescan:
    def test_the_verdict_comes_back_and_nothing_changes(
            self, store: QuarantineStore, service: QuarantineService) -> None:
        mid = put(store, 1001, "Policy")
        service.rescanner = FakeRescanner(VERDICT)
        before = store.get(mid)
        got = asyncio.run(service.rescan(Caller("olga", "cli", OPERATOR), mid))
        assert got["dry_run"] is True and got["action"] == "quarantine"
        assert got["verdicts"][0]["quarantine"] == "Virus"
        assert store.get(mid) == before
        (record,) = audit_of(service, "rescan")
        assert record["actor"] == "olga"
        assert record["detail"] == {"mid": mid, "dry_run": True, "gateway": "gw1.example.com",
                                    "action": "quarantine",
                                    "verdicts": ["Virus (a/v verdict:VIRAL Eicar)"]}

    def test_roles_are_those_of_a_release(self, store: QuarantineStore,
                                          service: QuarantineService) -> None:
        mid = put(store, 1001, "Policy")
        service.rescanner = FakeRescanner(VERDICT)
        with pytest.raises(PermissionDenied):
            asyncio.run(service.rescan(Caller("ro", "cli", READONLY), mid))
        with pytest.raises(PermissionDenied):
            asyncio.run(service.rescan(Caller("hr", "cli", CUSTOM, ("HR",)), mid))
        assert service.rescanner.asked == []

    def test_an_unknown_or_settled_message_is_refused(
            self, store: QuarantineStore, service: QuarantineService) -> None:
        service.rescanner = FakeRescanner(VERDICT)
        with pytest.raises(QuarantineError, match="No message with MID 77"):
            asyncio.run(service.rescan(ALICE, 77))
        mid = put(store, 1001, "Policy")
        service.act(ALICE, "delete", mid)
        assert store.get(mid)["state"] != HELD  # type: ignore[index]
        with pytest.raises(Conflict, match="no longer held"):
            asyncio.run(service.rescan(ALICE, mid))

    def test_a_failure_names_the_gateway_and_is_audited(
            self, store: QuarantineStore, service: QuarantineService) -> None:
        mid = put(store, 1001, "Policy")
        service.rescanner = FakeRescanner(error=OperatorError(
            "gateway gw1.example.com at 10.0.0.1:7025 is unreachable: refused"))
        with pytest.raises(OperatorError, match="gateway gw1.example.com"):
            asyncio.run(service.rescan(ALICE, mid))
        (record,) = audit_of(service, "rescan")
        assert "unreachable" in record["detail"]["error"]
        assert store.get(mid)["state"] == HELD  # type: ignore[index]
