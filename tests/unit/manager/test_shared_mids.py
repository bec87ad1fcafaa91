"""Several managers on one quarantine database: MIDs never collide (`manager.mids`), and a
release's transfer id is the same whichever manager spools it (`manager.releases`).

Run on SQLite and on a real PostgreSQL server.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from pvoq.manager.mids import BLOCK, SharedIds
from pvoq.manager.releases import release_transfer_id
from pvoq.quarantine.store import QuarantineStore
from pvoq.testing.pgserver import PostgresServer

_databases = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'quarantine.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"mids{next(_databases)}")


def meta(tid: str) -> dict[str, object]:
    return {"v": 1, "kind": "quarantine", "transfer_id": tid,
            "origin": {"hostname": "gw1.test", "serial": "GW", "mid": 1},
            "sender": "a@example.org", "recipients": [{"rid": 0, "address": "b@example.com"}],
            "quarantines": [{"name": "Policy", "reason": "content filter:x",
                             "stage": "content_filters"}],
            "received": 1700000000.0, "size": 0}


def test_two_managers_get_disjoint_mids(url: str, tmp_path: Path) -> None:
    """Two managers on one database store each other's mail without a collision: their
    MIDs come from distinct blocks reserved in the database."""
    a = QuarantineStore(url, tmp_path / "bodies", node="manager-a")
    b = QuarantineStore(url, tmp_path / "bodies", node="manager-b")
    try:
        ids_a = SharedIds(tmp_path / "a-ids.json", a.engine, block=5)
        ids_b = SharedIds(tmp_path / "b-ids.json", b.engine, block=5)
        taken = []
        for n in range(12):  # interleaved, across several blocks of each
            ids, store = (ids_a, a) if n % 3 else (ids_b, b)
            mid = ids.next("mid")
            stored, duplicate = store.add(mid=mid, meta=meta(f"q-transfer-{n:04d}"),
                                          body=b"Subject: s\r\n\r\nx\r\n", origin_ip="10.0.0.1",
                                          subject="s")
            assert (stored, duplicate) == (mid, False)
            taken.append(mid)
        assert len(set(taken)) == 12 and min(taken) == 1
        assert ids_a.next("icid") == ids_b.next("icid") == 1  # other kinds stay per process
    finally:
        a.close()
        b.close()


def test_the_first_block_starts_past_stored_messages_and_the_local_counter(
        url: str, tmp_path: Path) -> None:
    """Upgrading a manager that numbered its MIDs itself: no number is handed out again."""
    store = QuarantineStore(url, tmp_path / "bodies")
    try:
        store.add(mid=41, meta=meta("q-transfer-old1"), body=b"Subject: s\r\n\r\nx\r\n",
                  origin_ip="10.0.0.1", subject="s")
        assert SharedIds(tmp_path / "ids.json", store.engine).next("mid") == 42
        local = SharedIds(tmp_path / "other-ids.json", store.engine)
        assert local.next("mid") == 42 + BLOCK  # the next block, not the same one
    finally:
        store.close()


def test_a_restart_never_reuses_a_mid(url: str, tmp_path: Path) -> None:
    store = QuarantineStore(url, tmp_path / "bodies")
    try:
        first = SharedIds(tmp_path / "ids.json", store.engine, block=10)
        before = [first.next("mid") for _ in range(3)]
        again = SharedIds(tmp_path / "ids.json", store.engine, block=10)
        assert again.next("mid") > max(before)
    finally:
        store.close()


def test_release_transfer_ids_do_not_depend_on_the_manager() -> None:
    """The same stored message gives the same release transfer id on every manager, and
    different messages (or the same MID in another database) give different ones."""
    record = {"id": 31, "transfer_id": "q-GW-12-0123456789ab", "meta": {}}
    tid = release_transfer_id(record)
    assert tid == release_transfer_id(dict(record))
    assert tid.startswith("r-31-") and 8 <= len(tid) <= 128
    assert tid != release_transfer_id({**record, "transfer_id": "q-GW2-12-0123456789ab"})
    assert tid != release_transfer_id({**record, "id": 32})
