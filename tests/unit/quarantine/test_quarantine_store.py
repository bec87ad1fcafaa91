"""Tests for pvoq.quarantine.store: quarantined messages in SQLite, bodies on disk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from pvoq.quarantine.schema import message_bodies
from pvoq.quarantine.store import (
    DELETED,
    HELD,
    RELEASED,
    QuarantineError,
    QuarantineStore,
    unlink_bodies,
)

StoreFactory = Callable[..., QuarantineStore]

BODY = b"From: alice@example.org\r\nSubject: Q3\r\n\r\nnumbers\r\n"


def meta(transfer_id: str, *quarantines: str, origin_mid: int = 42) -> dict[str, Any]:
    """CPQ metadata of a quarantine transfer held in *quarantines*."""
    return {
        "v": 1, "kind": "quarantine", "transfer_id": transfer_id,
        "origin": {"hostname": "gw1.example.com", "serial": "GW1-SN", "mid": origin_mid},
        "sender": "alice@example.org",
        "recipients": [{"rid": 0, "address": "bob@example.com"}],
        "quarantines": [{"name": q, "reason": f"reason for {q}", "stage": "content_filters"}
                        for q in quarantines],
        "received": 1700000000.0, "size": len(BODY),
    }


def add(store: QuarantineStore, mid: int, *quarantines: str, transfer_id: str | None = None,
        body: bytes = BODY) -> tuple[int, bool]:
    return store.add(mid=mid, meta=meta(transfer_id or f"transfer-{mid:08d}", *quarantines),
                     body=body, origin_ip="10.1.2.1", subject="Q3")


class TestAdd:
    def test_add_stores_message_and_body(self, store: QuarantineStore) -> None:
        """A new transfer is stored under its MID with its body on disk."""
        assert add(store, 1001, "Policy") == (1001, False)
        row = store.get(1001)
        assert row is not None
        assert row["state"] == HELD
        assert row["origin_host"] == "gw1.example.com" and row["origin_mid"] == 42
        assert row["recipients"] == [{"rid": 0, "address": "bob@example.com"}]
        assert [q["quarantine"] for q in row["quarantines"]] == ["Policy"]
        assert store.read_body(1001) == BODY

    def test_duplicate_transfer_is_stored_once(self, store: QuarantineStore) -> None:
        """A retried transfer returns the first MID, flagged duplicate, and stores no second row."""
        add(store, 1001, "Policy", transfer_id="transfer-retried")
        assert add(store, 1002, "Policy", transfer_id="transfer-retried") == (1001, True)
        rows, total = store.list()
        assert total == 1 and [r["id"] for r in rows] == [1001]
        assert store.get(1002) is None
        assert store.find_transfer("transfer-retried") == 1001

    def test_unknown_transfer(self, store: QuarantineStore) -> None:
        """find_transfer of an unseen transfer id is None."""
        assert store.find_transfer("never-sent") is None

    def test_persists_across_reopen(self, make_store: StoreFactory,
                                    store: QuarantineStore) -> None:
        """A stored message is there after the store is reopened."""
        add(store, 1001, "Virus")
        store.close()
        assert make_store().find_transfer("transfer-00001001") == 1001


class TestViews:
    def test_list_and_counts(self, store: QuarantineStore) -> None:
        """list() filters by quarantine; counts() gives messages and bytes per quarantine."""
        add(store, 1, "Policy", body=b"a" * 10)
        add(store, 2, "Policy", "Virus", body=b"b" * 20)
        add(store, 3, "Outbreak", body=b"c" * 40)
        rows, total = store.list()
        assert total == 3 and {r["id"] for r in rows} == {1, 2, 3}
        rows, total = store.list(quarantine="Policy")
        assert total == 2 and {r["id"] for r in rows} == {1, 2}
        assert store.counts() == {"Policy": (2, 30), "Virus": (1, 20), "Outbreak": (1, 40)}

    def test_list_pages_with_total(self, store: QuarantineStore) -> None:
        """A page of the list still reports the total count."""
        for mid in range(1, 6):
            add(store, mid, "Policy")
        rows, total = store.list(limit=2, offset=1)
        assert total == 5 and len(rows) == 2

    def test_acted_messages_leave_the_views(self, store: QuarantineStore) -> None:
        """A message no longer held in a quarantine disappears from its list and counts."""
        add(store, 1, "Policy", "Virus")
        store.act(1, RELEASED, "Policy")
        assert store.list(quarantine="Policy") == ([], 0)
        assert store.counts() == {"Virus": (1, len(BODY))}

    def test_get_unknown(self, store: QuarantineStore) -> None:
        """get() of an unknown MID is None."""
        assert store.get(404) is None

    def test_get_many_is_get_for_each_found(self, store: QuarantineStore) -> None:
        """get_many() answers what get() does for each MID, and leaves the unknown out."""
        add(store, 1, "Policy", "Virus")
        add(store, 2, "Policy",
            body=b"Subject: a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                 b"Content-Type: text/plain\r\nContent-Disposition: attachment; "
                 b"filename=x.txt\r\n\r\nhello\r\n--b--\r\n")
        many = store.get_many([2, 404, 1])
        assert sorted(many) == [1, 2]
        assert many == {1: store.get(1), 2: store.get(2)}
        assert many[2]["attachments"] == [{"name": "x.txt", "size": 5}]
        assert store.get_many([]) == {}


class TestActions:
    def test_release_from_one_of_two_keeps_it_held(self, store: QuarantineStore) -> None:
        """Releasing from one of two quarantines leaves the message held in the other."""
        add(store, 1, "Policy", "Virus")
        outcome = store.act(1, RELEASED, "Policy")
        assert outcome.acted_on == ("Policy",)
        assert outcome.settled is None
        assert store.settlement(1) is None

    def test_release_from_both_settles_released(self, store: QuarantineStore) -> None:
        """Released from every quarantine, the message settles as released."""
        add(store, 1, "Policy", "Virus")
        store.act(1, RELEASED, "Policy")
        outcome = store.act(1, RELEASED, "Virus")
        assert outcome.settled == RELEASED

    def test_delete_wins_over_release(self, store: QuarantineStore) -> None:
        """Deleted from one quarantine, the message settles deleted even if released elsewhere."""
        add(store, 1, "Policy", "Virus")
        store.act(1, RELEASED, "Policy")
        assert store.act(1, DELETED, "Virus").settled == DELETED

    def test_delete_first_then_release(self, store: QuarantineStore) -> None:
        """A delete from one quarantine is not undone by a later release from the other."""
        add(store, 1, "Policy", "Virus")
        assert store.act(1, DELETED, "Policy").settled is None
        assert store.act(1, RELEASED, "Virus").settled == DELETED

    def test_act_on_all_quarantines(self, store: QuarantineStore) -> None:
        """Without a quarantine name the action applies to every one holding the message."""
        add(store, 1, "Policy", "Virus")
        outcome = store.act(1, RELEASED)
        assert sorted(outcome.acted_on) == ["Policy", "Virus"]
        assert outcome.settled == RELEASED

    def test_unknown_mid(self, store: QuarantineStore) -> None:
        """Acting on an unknown MID raises QuarantineError naming it."""
        with pytest.raises(QuarantineError, match="404"):
            store.act(404, RELEASED)

    def test_not_held_in_that_quarantine(self, store: QuarantineStore) -> None:
        """Acting on a quarantine that does not hold the message raises QuarantineError."""
        add(store, 1, "Policy")
        with pytest.raises(QuarantineError, match="Virus"):
            store.act(1, RELEASED, "Virus")

    def test_already_acted_on(self, store: QuarantineStore) -> None:
        """A second action on a quarantine already acted on raises QuarantineError."""
        add(store, 1, "Policy", "Virus")
        store.act(1, RELEASED, "Policy")
        with pytest.raises(QuarantineError):
            store.act(1, DELETED, "Policy")
        assert store.settlement(1) is None

    def test_unknown_action(self, store: QuarantineStore) -> None:
        """An action other than release or delete is a ValueError."""
        add(store, 1, "Policy")
        with pytest.raises(ValueError, match="held"):
            store.act(1, HELD)


class TestSettlement:
    def test_unsettled_lists_fully_acted_messages(self, store: QuarantineStore) -> None:
        """unsettled() lists messages no quarantine holds whose settlement has not finished."""
        add(store, 1, "Policy")
        add(store, 2, "Policy", "Virus")
        add(store, 3, "Virus")
        store.act(1, RELEASED)
        store.act(2, RELEASED, "Policy")
        store.act(3, DELETED)
        assert sorted(store.unsettled()) == [1, 3]

    def test_finish_removes_body_and_unsettled(self, make_store: StoreFactory) -> None:
        """finish() records the settlement, removes the body and leaves unsettled()."""
        store = make_store(inline_max=0)  # every body a file
        add(store, 1, "Policy")
        body_path = Path(store.get(1)["body_path"])
        assert body_path.exists()
        store.act(1, DELETED)
        store.finish(1, DELETED)
        assert not body_path.exists()
        assert store.unsettled() == []
        row = store.get(1)
        assert row["state"] == DELETED and row["settled_at"] is not None

    def test_finish_many_can_leave_the_unlinks_to_the_caller(
            self, make_store: StoreFactory) -> None:
        """finish_many(unlink=False) settles in one transaction and returns the bodies,
        which stay until the caller unlinks them (off the event loop)."""
        store = make_store(inline_max=0)
        add(store, 1, "Policy")
        add(store, 2, "Policy")
        store.act(1, DELETED)
        store.act(2, RELEASED)
        bodies = store.finish_many([(1, DELETED), (2, RELEASED)], unlink=False)
        assert sorted(p.name for p in bodies) == ["1.eml", "2.eml"]
        assert all(p.exists() for p in bodies)
        assert store.unsettled() == []
        unlink_bodies(bodies)
        unlink_bodies(bodies)  # already gone: nothing to do
        assert not any(p.exists() for p in bodies)


class TestInlineBodies:
    """A store with bodies on disk keeps a small body in the database all the same."""

    def bodies_rows(self, store: QuarantineStore) -> list[int]:
        with store.engine.connect() as conn:
            return sorted(m for (m,) in conn.execute(select(message_bodies.c.message_id)))

    def test_up_to_inline_max_in_the_database_larger_as_files(
            self, make_store: StoreFactory, tmp_path: Path) -> None:
        small, edge, large = BODY, BODY.ljust(100, b"x"), BODY.ljust(101, b"x")
        s = make_store(inline_max=100)
        add(s, 1, "Policy", body=small)
        add(s, 2, "Policy", body=edge)
        add(s, 3, "Policy", body=large)
        assert self.bodies_rows(s) == [1, 2]
        assert sorted(p.name for p in (tmp_path / "bodies").iterdir()) == ["3.eml"]
        assert [s.get(m)["body_path"] for m in (1, 2)] == ["", ""]
        assert s.get(3)["body_path"] == str(tmp_path / "bodies" / "3.eml")
        assert [s.read_body(m) for m in (1, 2, 3)] == [small, edge, large]

    def test_settling_drops_each_body_where_it_is(self, make_store: StoreFactory,
                                                  tmp_path: Path) -> None:
        s = make_store(inline_max=100)
        for mid, size in [(1, 50), (2, 500), (3, 60), (4, 600)]:
            add(s, mid, "Policy", body=BODY.ljust(size, b"x"))
        for mid in (1, 2, 3, 4):
            s.act(mid, DELETED)
        s.finish(1, DELETED)
        s.finish(2, DELETED)
        assert self.bodies_rows(s) == [3]
        assert [p.name for p in (tmp_path / "bodies").iterdir()] == ["4.eml"]
        assert s.finish_many([(3, DELETED), (4, DELETED)]) == [tmp_path / "bodies" / "4.eml"]
        assert self.bodies_rows(s) == [] and list((tmp_path / "bodies").iterdir()) == []
        for mid in (1, 2, 3, 4):
            with pytest.raises(FileNotFoundError):
                s.read_body(mid)

    def test_a_store_that_kept_files_reads_them_after_the_change(
            self, make_store: StoreFactory) -> None:
        """Each row says where its body is: bodies written as files before inline bodies
        (or before the threshold changed) are read and dropped as files."""
        before = make_store(inline_max=0)
        add(before, 1, "Policy")
        after = make_store()
        add(after, 2, "Policy")
        assert (self.bodies_rows(after), after.read_body(1), after.read_body(2)) == \
            ([2], BODY, BODY)
        after.act(1, DELETED)
        after.finish(1, DELETED)
        assert not Path(before.get(1)["body_path"]).exists()


class TestBodiesInDatabase:
    def test_body_kept_in_the_database(self, make_store: StoreFactory, tmp_path: Path) -> None:
        """With bodies=database the body is stored with the row, read back, and dropped
        when the message settles; nothing is written to the bodies directory."""
        s = make_store(bodies="database")
        add(s, 1, "Policy")
        assert s.read_body(1) == BODY
        assert s.get(1)["body_path"] == ""
        assert not (tmp_path / "bodies" / "1.eml").exists()
        s.act(1, DELETED)
        s.finish(1, DELETED)
        with pytest.raises(FileNotFoundError):
            s.read_body(1)
