"""`gateway.receipts.ReceiptBundler`: the release receipts due together travel as one
`release_receipts` transfer to a manager offering `XCPQ-RECEIPTS`, one by one otherwise."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pvoq.config.model import THE_CPQ_HOST
from pvoq.cpq.metadata import decode_transfer
from pvoq.cpq.transfer import Origin, Outcome, ReceiptOutcome, ReleaseReceipt, ReleaseReceipts
from pvoq.delivery.queue import Item, Target
from pvoq.gateway import receipts as receipts_module
from pvoq.gateway.receipts import RECEIPT_RECIPIENT, ReceiptBundler, bundle_id
from pvoq.spool.store import QUEUED, Entry, EntryMeta, Recipient

CONFIG: Any = SimpleNamespace(hostname="gw1.example.com", serial_number="GW-SN")


def receipt_entry(mid: int, reply: str = "250 2.0.0 Ok") -> Item:
    receipt = ReleaseReceipt(
        transfer_id=f"d-GW-SN-{mid}-0123456789ab", origin=Origin("gw1.example.com", "GW-SN", mid),
        release_id=f"r-{mid}-0123456789abcdef", entry=1000 + mid,
        outcomes=(ReceiptOutcome(0, "bob@example.com", Outcome.DELIVERED, "mx.example.com",
                                 reply, 1_800_000_000.0),))
    entry = Entry(mid=mid, sender="", recipients=[Recipient(0, RECEIPT_RECIPIENT,
                                                            host=THE_CPQ_HOST)],
                  received=1.0, size=10, state=QUEUED,
                  meta=EntryMeta(cpq=receipt.to_json(), receipt_for=mid - 1))
    return entry, list(entry.recipients), Target("127.0.0.1", 7025,
                                                  extra=["XCPQ META " + "x" * 600],
                                                  start_note="to Centralized Policy Quarantine")


def quarantined(mid: int) -> Item:
    entry = Entry(mid=mid, sender="a@example.org",
                  recipients=[Recipient(0, "b@example.com", host=THE_CPQ_HOST)], received=1.0,
                  size=10, state=QUEUED, meta=EntryMeta(cpq={"kind": "quarantine"}))
    return entry, list(entry.recipients), Target("127.0.0.1", 7025, extra=["XCPQ META q"])


class Conn:
    def __init__(self, keyword: str | None) -> None:
        self.extensions = {} if keyword is None else {"xcpq-receipts": keyword}

    def supports(self, keyword: str) -> bool:
        return keyword.lower() in self.extensions


def test_receipts_go_together_other_transfers_alone() -> None:
    items = [receipt_entry(1), quarantined(2), receipt_entry(3), receipt_entry(4)]
    groups = ReceiptBundler(lambda: CONFIG).groups(items)
    assert [[e.mid for e, _, _ in g] for g in groups] == [[2], [1, 3, 4]]


def test_groups_are_bounded_in_count_and_metadata(monkeypatch: Any) -> None:
    monkeypatch.setattr(receipts_module, "MAX_BUNDLE", 3)
    items = [receipt_entry(mid) for mid in range(1, 8)]
    groups = ReceiptBundler(lambda: CONFIG).groups(items)
    assert [len(g) for g in groups] == [3, 3, 1]
    monkeypatch.setattr(receipts_module, "MAX_BUNDLE_CHARS", 1500)  # 610 characters each
    groups = ReceiptBundler(lambda: CONFIG).groups(items)
    assert [len(g) for g in groups] == [2, 2, 2, 1]


def test_the_bundle_carries_each_receipt_as_it_was_spooled() -> None:
    items = [receipt_entry(1), receipt_entry(3, reply="550 5.1.1 no such user")]
    bundle = ReceiptBundler(lambda: CONFIG).bundle(Conn("1000"), items)  # type: ignore[arg-type]
    assert bundle is not None
    assert bundle.items == items and bundle.sender == "" and bundle.recipient == RECEIPT_RECIPIENT
    assert bundle.target.start_note == "to Centralized Policy Quarantine"
    got = decode_transfer([line.removeprefix("XCPQ META ") for line in bundle.target.extra])
    assert isinstance(got, ReleaseReceipts)
    assert got.origin.hostname == "gw1.example.com" and got.origin.mid == 1
    assert [r.to_json() for r in got.receipts] == [e.meta["cpq"] for e, _, _ in items]
    assert got.transfer_id == bundle_id("GW-SN", [r.transfer_id for r in got.receipts])
    assert b"X-Pvoq-Receipts: " + got.transfer_id.encode() in bundle.body


def test_a_manager_without_the_keyword_gets_one_receipt_per_transfer() -> None:
    """An older manager: no `XCPQ-RECEIPTS` in its EHLO."""
    items = [receipt_entry(1), receipt_entry(3)]
    assert ReceiptBundler(lambda: CONFIG).bundle(Conn(None), items) is None  # type: ignore[arg-type]


def test_a_group_larger_than_the_manager_takes_goes_one_by_one() -> None:
    items = [receipt_entry(1), receipt_entry(3), receipt_entry(4)]
    bundler = ReceiptBundler(lambda: CONFIG)
    assert bundler.bundle(Conn("2"), items) is None  # type: ignore[arg-type]
    assert bundler.bundle(Conn("3"), items) is not None  # type: ignore[arg-type]


def test_the_id_is_the_same_for_the_same_receipts() -> None:
    assert bundle_id("GW-SN", ["d-2", "d-1"]) == bundle_id("GW-SN", ["d-1", "d-2"])
    assert bundle_id("GW-SN", ["d-1"]) != bundle_id("GW-SN", ["d-1", "d-2"])
    assert 8 <= len(bundle_id("GW-SN", ["d-1"])) <= 128
