"""The store's settlement queries stay linear in the held messages (SQLite's own count of
the virtual-machine steps it ran, not a time): a correlated EXISTS that SQLite answered
from the state index made `unsettled()` scan every held row once per held message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event

from pvoq.quarantine.arrivals import Arrival
from pvoq.quarantine.store import DELETED, QuarantineStore

HELD = 3000
STEP = 1000  # the progress handler runs every this many SQLite VM instructions


def _fill(store: QuarantineStore) -> None:
    arrivals = [Arrival(mid, {
        "v": 1, "kind": "quarantine", "transfer_id": f"t-{mid}",
        "origin": {"hostname": "gw", "serial": "S", "mid": mid}, "sender": "a@example.org",
        "recipients": [{"rid": 0, "address": "b@example.com"}],
        "quarantines": [{"name": "Policy", "reason": "r", "stage": "content_filters"}],
        "received": 1.0, "size": 1}, b"x", "10.0.0.1", "s") for mid in range(1, HELD + 1)]
    for i in range(0, HELD, 500):
        store.add_many(arrivals[i:i + 500])


def _steps(store: QuarantineStore) -> dict[str, int]:
    counted = {"n": 0}

    def count() -> int:
        counted["n"] += 1
        return 0

    def checkout(dbapi: Any, record: Any, proxy: Any) -> None:
        dbapi.set_progress_handler(count, STEP)
    event.listen(store.engine, "checkout", checkout)
    return counted


def test_unsettled_and_act_many_are_linear_in_the_held_messages(tmp_path: Path) -> None:
    store = QuarantineStore(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "bodies")
    _fill(store)
    counted = _steps(store)
    assert store.unsettled() == []
    # Linear: a few instructions a held message. The quadratic plan ran ~HELD² / STEP.
    assert counted["n"] * STEP < 200 * HELD, counted["n"]
    counted["n"] = 0
    outcomes = store.act_many(range(1, 65), DELETED)
    assert [o.settled for o in outcomes] == [DELETED] * 64
    assert counted["n"] * STEP < 200 * HELD, counted["n"]
    store.close()
