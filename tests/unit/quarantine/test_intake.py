"""The store's intake (`quarantine.intake`, `quarantine.arrivals`): batches, failures, sweep.

On SQLite and a real PostgreSQL server. A batch stores all its arrivals or
none: a database error or a failed fsync leaves no row and no body. The
group commit hands every arrival waiting to one batch. The start-up sweep
removes bodies with no held message and temporary files, and nothing a
write in progress still needs.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from qhelpers import body, meta
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from pvoq.quarantine import arrivals as arrivals_module
from pvoq.quarantine.arrivals import Arrival, BodyCollision
from pvoq.quarantine.batchsql import BODIES_A_STATEMENT
from pvoq.quarantine.intake import SHARED_SWEEP_AGE_S
from pvoq.quarantine.schema import (
    attachments,
    message_bodies,
    message_quarantines,
    messages,
    reasons,
)
from pvoq.quarantine.store import QuarantineStore


def arrival(mid: int, transfer_id: str | None = None, reason: str | None = None) -> Arrival:
    held = ("Policy", reason) if reason is not None else "Policy"
    return Arrival(mid, meta(held, transfer_id=transfer_id or f"intake-{mid}"),
                   body(f"intake {mid}"), "10.1.2.1", f"intake {mid}")


def rows(store: QuarantineStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(messages)).scalar() or 0)


def files(store: QuarantineStore) -> list[str]:
    return sorted(os.listdir(store.bodies)) if store.bodies.is_dir() else []


def database_error(*args: Any, **kwargs: Any) -> None:
    raise OperationalError("INSERT", {}, Exception("disk I/O error"))


@pytest.fixture
def make_store(make_store: Callable[..., QuarantineStore]) -> Callable[..., QuarantineStore]:
    """Stores whose every body is a file (what most of this module is about), unless a
    test asks for small bodies in the database (`TestInlineBodies`)."""
    def make(**kwargs: Any) -> QuarantineStore:
        kwargs.setdefault("inline_max", 0)
        return make_store(**kwargs)
    return make


def body_rows(store: QuarantineStore) -> list[int]:
    with store.engine.connect() as conn:
        return sorted(m for (m,) in conn.execute(select(message_bodies.c.message_id)))


def test_metadata_and_recipients_read_back_as_sent(
        make_store: Callable[..., QuarantineStore]) -> None:
    """On SQLite they ride in the batch's JSON array as values and are stored as their
    JSON text (`batchsql.MESSAGE_JSON`), elsewhere serialized a row at a time: either
    way they read back as sent, quotes, backslashes, controls and non-ASCII included."""
    store = make_store()
    sent = meta(("Policy", 'a "quote", a back\\slash, \u00e9t\u00e9 \U0001f600, '
                           '\u2028 \t \u0001 end'), transfer_id="intake-weird-1")
    sent["recipients"][0]["address"] = "b\u00f6b@ex\u00e4mple.com"
    sent["unmodelled"] = {"nested": [1, 2.5, None, True, 'x"y']}
    store.add_many([Arrival(1, sent, body("weird"), "10.1.2.1", "weird")])
    with store.engine.connect() as conn:
        row = conn.execute(select(messages.c.meta, messages.c.recipients)).one()
    assert json.loads(row.meta) == sent
    assert json.loads(row.recipients) == sent["recipients"]


def test_a_nul_in_the_subject_or_an_attachment_name_fails_no_batch(
        make_store: Callable[..., QuarantineStore]) -> None:
    """A message may carry a NUL in its Subject or an attachment's name; PostgreSQL's
    text refuses it, which failed the whole batch (every transfer in it, at every
    retry). Both databases store it as U+FFFD, and the batch goes in."""
    store = make_store()
    hostile = Arrival(1, meta("Policy", transfer_id="intake-nul-1"),
                      body("sub", attachment=("a\x00b.pdf", 10)), "10.1.2.1", "sub\x00ject")
    assert store.add_many([hostile, arrival(2)]) == [(1, False), (2, False)]
    with store.engine.connect() as conn:
        assert conn.execute(select(messages.c.subject).where(messages.c.id == 1)
                            ).scalar() == "sub\ufffdject"
        assert [n for (n,) in conn.execute(select(attachments.c.name).where(
            attachments.c.message_id == 1))] == ["a\ufffdb.pdf"]


class TestInlineBodies:
    """Small bodies in the database, larger ones as files, in one batch."""

    def arrivals(self, inline_max: int) -> list[Arrival]:
        found = [arrival(m) for m in range(1, 7)]
        # MIDs 2, 4 and 6 over the threshold: files; 1, 3 and 5 in the database.
        return [a if a.mid % 2 else Arrival(a.mid, a.meta, a.body.ljust(inline_max + 1, b"x"),
                                            a.origin_ip, a.subject) for a in found]

    def test_a_batch_of_both_kinds_goes_in_whole_or_not_at_all(
            self, make_store: Callable[..., QuarantineStore],
            monkeypatch: pytest.MonkeyPatch) -> None:
        store = make_store(inline_max=2000)
        batch = self.arrivals(2000)
        monkeypatch.setattr(store, "_index_many", database_error)
        with pytest.raises(OperationalError):
            store.add_many(batch)
        assert (files(store), body_rows(store), rows(store)) == ([], [], 0)
        monkeypatch.undo()
        assert store.add_many(batch) == [(m, False) for m in range(1, 7)]
        assert files(store) == ["2.eml", "4.eml", "6.eml"] and body_rows(store) == [1, 3, 5]
        assert [store.read_body(a.mid) for a in batch] == [a.body for a in batch]

    def test_a_batch_larger_than_one_bodies_statement_keeps_every_body(
            self, make_store: Callable[..., QuarantineStore]) -> None:
        """On SQLite a batch's bodies go in `BODIES_A_STATEMENT` at a time: a batch of
        more than that stores each body once, under its own MID (and the held counter
        counts their bytes)."""
        store = make_store(inline_max=2000)
        batch = [arrival(m) for m in range(1, BODIES_A_STATEMENT + 2 * 13 + 1)]
        assert store.add_many(batch) == [(a.mid, False) for a in batch]
        assert body_rows(store) == [a.mid for a in batch] and files(store) == []
        assert [store.read_body(a.mid) for a in batch] == [a.body for a in batch]
        assert store.used_bytes() == sum(len(a.body) for a in batch)

    def test_handed_in_together_only_the_large_are_staged(
            self, make_store: Callable[..., QuarantineStore]) -> None:
        """`add_async` writes and syncs a large body ahead of its batch; a small one waits
        for the batch's commit. Sent again, each is a duplicate and stays as it was."""
        store = make_store(inline_max=2000)
        batch = self.arrivals(2000)
        staged: list[Path] = []
        real = arrivals_module.stage_body

        def stage(path: Path, content: bytes) -> list[tuple[str, int]]:
            staged.append(path)
            return real(path, content)

        async def scenario() -> list[tuple[int, bool]]:
            return list(await asyncio.gather(*(store.add_async(a) for a in batch)))

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("pvoq.quarantine.intake.stage_body", stage)
            assert asyncio.run(scenario()) == [(m, False) for m in range(1, 7)]
            assert sorted(p.name for p in staged) == ["2.eml", "4.eml", "6.eml"]
            assert asyncio.run(scenario()) == [(m, True) for m in range(1, 7)]
        assert files(store) == ["2.eml", "4.eml", "6.eml"] and body_rows(store) == [1, 3, 5]
        assert [store.read_body(a.mid) for a in batch] == [a.body for a in batch]


class TestFailures:
    def test_a_database_error_leaves_no_body(self, store: QuarantineStore,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
        """Not only a unique-key conflict: any database error removes the body written."""
        monkeypatch.setattr(store, "_count", database_error)
        with pytest.raises(OperationalError):
            store.add(mid=7, meta=meta("Policy"), body=body(), origin_ip="10.1.2.1",
                      subject="Q3 numbers")
        assert files(store) == [] and rows(store) == 0

    def test_a_failed_batch_leaves_no_body_and_no_row(self, store: QuarantineStore,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(store, "_index_many", database_error)
        with pytest.raises(OperationalError):
            store.add_many([arrival(1), arrival(2), arrival(3)])
        assert files(store) == [] and rows(store) == 0
        monkeypatch.undo()
        assert store.add_many([arrival(1), arrival(2)]) == [(1, False), (2, False)]
        assert files(store) == ["1.eml", "2.eml"] and rows(store) == 2

    def test_a_failed_fsync_fails_the_whole_batch(self, store: QuarantineStore,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        real = os.fdatasync
        calls = []

        def full_disk(fd: int) -> None:
            calls.append(fd)
            if len(calls) == 2:
                raise OSError(28, "No space left on device")
            real(fd)

        monkeypatch.setattr(os, "fdatasync", full_disk)
        with pytest.raises(OSError, match="No space left"):
            store.add_many([arrival(1), arrival(2), arrival(3)])
        assert files(store) == [] and rows(store) == 0

    def test_a_failed_body_write_leaves_nothing(self, store: QuarantineStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        real = os.write
        writes = []

        def short_disk(fd: int, data: Any) -> int:
            writes.append(fd)
            if len(writes) == 2:
                raise OSError(28, "No space left on device")
            return real(fd, data)

        monkeypatch.setattr(os, "write", short_disk)
        with pytest.raises(OSError, match="No space left"):
            store.add_many([arrival(1), arrival(2)])
        monkeypatch.undo()
        assert files(store) == [] and rows(store) == 0


class TestBodyFiles:
    """A body file is created, never written over; `add_async` stages it before its batch."""

    @pytest.mark.parametrize("how", ["add_many", "add_async"])
    def test_a_file_of_that_mid_is_never_written_over(self, store: QuarantineStore,
                                                      how: str) -> None:
        """A MID collision (a file of that name that no stored transfer explains) fails
        the transfer loudly and leaves the file as it was."""
        store.bodies.mkdir(parents=True, exist_ok=True)
        (store.bodies / "5.eml").write_bytes(b"another message")
        with pytest.raises(BodyCollision, match=r"5\.eml exists already"):
            if how == "add_many":
                store.add_many([arrival(5)])
            else:
                asyncio.run(store.add_async(arrival(5)))
        assert (store.bodies / "5.eml").read_bytes() == b"another message"
        assert rows(store) == 0 and files(store) == ["5.eml"]

    def test_a_staged_body_is_not_written_again_by_its_batch(
            self, store: QuarantineStore, monkeypatch: pytest.MonkeyPatch) -> None:
        """`add_async` writes and syncs the body as it hands the arrival in; the batch
        only inserts the rows and commits."""
        def no_write(*args: Any) -> None:
            raise AssertionError("the batch wrote a body again")

        monkeypatch.setattr(arrivals_module.BodyFiles, "write", no_write)

        async def two() -> list[tuple[int, bool]]:
            return list(await asyncio.gather(store.add_async(arrival(1)),
                                             store.add_async(arrival(2))))

        assert asyncio.run(two()) == [(1, False), (2, False)]
        assert files(store) == ["1.eml", "2.eml"] and rows(store) == 2
        assert store.read_body(2) == body("intake 2")

    def test_a_failed_staging_fails_its_arrival_and_leaves_nothing(
            self, store: QuarantineStore, monkeypatch: pytest.MonkeyPatch) -> None:
        """A body whose staging fails (a full disk at its fdatasync): its caller hears
        the error (and so does the rest of its batch), no body and no row of them stay;
        an arrival of another batch is stored."""
        real = os.fdatasync
        calls: list[int] = []

        def full_disk(fd: int) -> None:
            calls.append(fd)
            if len(calls) == 1:
                raise OSError(28, "No space left on device")
            real(fd)

        monkeypatch.setattr(os, "fdatasync", full_disk)

        async def two() -> list[Any]:
            return list(await asyncio.gather(*(store.add_async(arrival(m)) for m in (1, 2)),
                                             return_exceptions=True))

        outcomes = asyncio.run(two())
        failed = [o for o in outcomes if isinstance(o, OSError)]
        stored = [o[0] for o in outcomes if not isinstance(o, BaseException)]
        assert failed and len(failed) + len(stored) == 2, outcomes
        assert files(store) == [f"{m}.eml" for m in stored] and rows(store) == len(stored)

    def test_a_duplicate_in_the_batch_leaves_no_staged_body(
            self, store: QuarantineStore, monkeypatch: pytest.MonkeyPatch) -> None:
        """The same transfer handed in twice at once under two MIDs: stored once, and
        the body staged for the second MID is removed."""
        release = threading.Event()
        real_many = store.add_many

        def gated(batch: list[Arrival]) -> list[tuple[int, bool]]:
            assert release.wait(10)
            return real_many(batch)

        monkeypatch.setattr(store, "add_many", gated)

        async def both() -> list[tuple[int, bool]]:
            tasks = [asyncio.ensure_future(store.add_async(arrival(m, "t-twice")))
                     for m in (1, 2)]
            await asyncio.sleep(0.2)
            release.set()
            return list(await asyncio.gather(*tasks))

        assert sorted(asyncio.run(both())) == [(1, False), (1, True)]
        assert files(store) == ["1.eml"] and rows(store) == 1


class TestBatches:
    def test_duplicates_within_and_across_batches(self, store: QuarantineStore) -> None:
        assert store.add_many([arrival(1, "t-a"), arrival(2, "t-b"), arrival(3, "t-a")]) == \
            [(1, False), (2, False), (1, True)]
        assert store.add_many([arrival(4, "t-b"), arrival(5, "t-c")]) == [(2, True), (5, False)]
        assert files(store) == ["1.eml", "2.eml", "5.eml"] and rows(store) == 3
        assert store.held_count("Policy") == 3
        assert store.used_bytes() == sum(len(body(f"intake {m}")) for m in (1, 2, 5))
        assert store.read_body(2) == body("intake 2")

    def test_a_transfer_another_manager_stored_is_a_duplicate(
            self, make_store: Callable[..., QuarantineStore], monkeypatch: pytest.MonkeyPatch) -> None:
        """The transfer id's unique key finds it (nothing is looked up first): that one is
        a duplicate, its body is removed, and the others go in together."""
        first, second = make_store(), make_store()
        first.add_many([arrival(1, "t-other")])
        batches: list[list[int]] = []
        real = second._insert_arrivals

        def recorded(fresh: list[Arrival]) -> None:
            batches.append([a.mid for a in fresh])
            real(fresh)

        monkeypatch.setattr(second, "_insert_arrivals", recorded)
        assert second.add_many([arrival(2, "t-new"), arrival(3, "t-other"),
                                arrival(4, "t-new2")]) == [(2, False), (1, True), (4, False)]
        assert batches == [[2, 3, 4], [2, 4]]
        assert files(first) == ["1.eml", "2.eml", "4.eml"] and rows(first) == 3
        assert first.held_count("Policy") == 3 and second.held_count() == 3

    def test_the_same_arrival_again_leaves_its_stored_body_alone(
            self, store: QuarantineStore) -> None:
        """Handed in again with its MID (a migration resent, a local quarantine's retry):
        a duplicate, and the body already stored is neither written over nor removed."""
        store.add_many([arrival(1, "t-same")])
        again = Arrival(1, meta("Policy", transfer_id="t-same"), b"Subject: other\r\n\r\nx",
                        "10.1.2.1", "other")
        assert store.add_many([again, arrival(2, "t-two")]) == [(1, True), (2, False)]
        assert store.read_body(1) == body("intake 1")
        assert files(store) == ["1.eml", "2.eml"] and rows(store) == 2

    def test_a_conflict_on_another_key_is_retried_one_by_one(
            self, store: QuarantineStore) -> None:
        """Not a transfer stored before (here one arrival's recipients clash): one arrival
        at a time, so those before it are stored and the conflicting one fails."""
        clash = arrival(2, "t-two")
        clash.meta["recipients"] = [{"rid": 0, "address": "bob@example.com"},
                                    {"rid": 0, "address": "eve@example.com"}]
        with pytest.raises(IntegrityError):
            store.add_many([arrival(1, "t-one"), clash, arrival(3, "t-three")])
        assert files(store) == ["1.eml"] and rows(store) == 1
        assert store.find_transfer("t-one") == 1 and store.find_transfer("t-two") is None

    def test_nothing_is_looked_up_before_a_batch_goes_in(
            self, store: QuarantineStore, monkeypatch: pytest.MonkeyPatch) -> None:
        """New transfers cost no query of the transfer ids (the unique key answers)."""
        looked: list[list[str]] = []
        real = store._find_transfers
        monkeypatch.setattr(store, "_find_transfers",
                            lambda ids: looked.append(ids) or real(ids))
        assert store.add_many([arrival(1), arrival(2)]) == [(1, False), (2, False)]
        assert looked == []

    def test_what_waits_goes_in_one_batch_and_a_failed_batch_fails_each(
            self, store: QuarantineStore, monkeypatch: pytest.MonkeyPatch) -> None:
        """The first arrival is taken alone while the others queue; they then share one
        batch, whose failure every one of them hears, and which leaves nothing behind."""
        real = store.add_many
        batches: list[list[int]] = []
        release = threading.Event()

        def gated(arrivals: list[Arrival]) -> list[tuple[int, bool]]:
            batches.append([a.mid for a in arrivals])
            if len(batches) == 1:
                assert release.wait(10)
                return real(arrivals)
            monkeypatch.setattr(store, "_index_many", database_error)
            return real(arrivals)

        monkeypatch.setattr(store, "add_many", gated)
        arrivals = [arrival(m) for m in range(1, 9)]

        async def scenario() -> list[Any]:
            tasks = [asyncio.ensure_future(store.add_async(arrivals[0]))]
            deadline = time.monotonic() + 10
            while not batches and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            tasks += [asyncio.ensure_future(store.add_async(a)) for a in arrivals[1:]]
            while store.pending_bytes < sum(len(a.body) for a in arrivals) and \
                    time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            release.set()
            return await asyncio.gather(*tasks, return_exceptions=True)

        results = asyncio.run(scenario())
        assert batches == [[1], [2, 3, 4, 5, 6, 7, 8]]
        assert results[0] == (1, False)
        assert all(isinstance(r, OperationalError) for r in results[1:])
        assert files(store) == ["1.eml"] and rows(store) == 1
        assert store.pending_bytes == 0


class TestReasons:
    def reason_ids(self, store: QuarantineStore) -> dict[int, tuple[str, str]]:
        """Per held row: (the reason it carries, the text its reason id points to)."""
        with store.engine.connect() as conn:
            return {int(m): (r, t) for m, r, t in conn.execute(
                select(message_quarantines.c.message_id, message_quarantines.c.reason,
                       reasons.c.text).join(reasons,
                                            reasons.c.id == message_quarantines.c.reason_id))}

    def test_a_known_reason_is_not_looked_up_again(
            self, store: QuarantineStore, monkeypatch: pytest.MonkeyPatch) -> None:
        store.add_many([arrival(1, reason="virus:A"), arrival(2, reason="virus:B")])
        looked: list[list[str]] = []
        real = store._reason_ids

        def recorded(conn: Any, texts: list[str]) -> dict[str, int]:
            looked.append(texts)
            return real(conn, texts)

        monkeypatch.setattr(store, "_reason_ids", recorded)
        store.add_many([arrival(3, reason="virus:A"), arrival(4, reason="virus:B")])
        assert looked == []
        store.add_many([arrival(5, reason="virus:A"), arrival(6, reason="virus:C")])
        assert looked == [["virus:C"]]
        assert all(r == t for r, t in self.reason_ids(store).values())
        assert len(self.reason_ids(store)) == 6

    def test_a_reason_added_by_a_failed_batch_is_not_remembered(
            self, store: QuarantineStore, monkeypatch: pytest.MonkeyPatch) -> None:
        """Its id was rolled back and may go to another reason: the next batch with it
        looks it up again, and every held row names its own reason."""
        store.add_many([arrival(1, reason="virus:A")])
        monkeypatch.setattr(store, "_index_many", database_error)
        with pytest.raises(OperationalError):
            store.add_many([arrival(2, reason="virus:lost")])
        monkeypatch.undo()
        store.add_many([arrival(3, reason="virus:other")])
        store.add_many([arrival(4, reason="virus:lost"), arrival(5, reason="virus:A")])
        assert self.reason_ids(store) == {1: ("virus:A", "virus:A"),
                                          3: ("virus:other", "virus:other"),
                                          4: ("virus:lost", "virus:lost"),
                                          5: ("virus:A", "virus:A")}

    def test_a_reason_another_manager_added_is_found(self, make_store: Callable[..., QuarantineStore]) -> None:
        first, second = make_store(), make_store()
        first.add_many([arrival(1, reason="virus:A")])
        second.add_many([arrival(2, reason="virus:B")])
        first.add_many([arrival(3, reason="virus:B")])
        second.add_many([arrival(4, reason="virus:A")])
        assert all(r == t for r, t in self.reason_ids(first).values())
        with first.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(reasons)).scalar() == 2


class TestSweep:
    def age(self, path: Path, seconds: float = 2 * SHARED_SWEEP_AGE_S) -> None:
        then = time.time() - seconds
        os.utime(path, (then, then))

    def test_orphans_and_temporary_files_go(self, store: QuarantineStore) -> None:
        store.add_many([arrival(1), arrival(2), arrival(3)])
        store.finish(3, "deleted")
        settled = store.bodies / "3.eml"
        settled.write_bytes(b"left by a crash between the settlement and its unlink")
        orphan = store.bodies / "40.eml"
        orphan.write_bytes(b"never committed")
        temp = store.bodies / f".41.eml.{os.getpid()}.tmp"
        temp.write_bytes(b"half")
        other = store.bodies / "notes.txt"
        other.write_bytes(b"not ours to judge")
        for p in store.bodies.iterdir():
            self.age(p)
        assert store.sweep_bodies() == (2, 1)
        assert files(store) == ["1.eml", "2.eml", "notes.txt"]
        assert store.read_body(1) == body("intake 1")
        assert store.sweep_bodies() == (0, 0)

    def test_a_file_beside_a_body_in_the_database_goes(
            self, make_store: Callable[..., QuarantineStore]) -> None:
        """A held message whose body is in the database owns no file: one of its MID (a
        failed batch's leftover, its transfer stored again as a small body) is swept."""
        store = make_store(inline_max=64 * 1024)
        store.add_many([arrival(1)])
        leftover = store.bodies / "1.eml"
        leftover.write_bytes(b"a failed batch's body")
        self.age(leftover)
        assert store.sweep_bodies() == (1, 0)
        assert files(store) == [] and store.read_body(1) == body("intake 1")

    def test_young_bodies_stay_where_managers_share_the_database(
            self, store: QuarantineStore) -> None:
        """A body written a minute ago may be another manager's batch in progress (on
        PostgreSQL): it stays; on SQLite only this manager writes there."""
        store.bodies.mkdir(parents=True, exist_ok=True)
        young = store.bodies / "50.eml"
        young.write_bytes(b"another manager's, row not yet committed")
        self.age(young, 60)
        assert store.sweep_bodies() == ((0, 0) if store.dialect == "postgresql" else (1, 0))

    def test_a_write_in_progress_is_kept(self, store: QuarantineStore,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
        """A batch being written has bodies and no rows yet: the sweep leaves them."""
        real = store._insert_arrivals
        writing, release = threading.Event(), threading.Event()
        swept: list[tuple[int, int]] = []

        def slow(fresh: list[Arrival], staged: Any = None) -> None:
            # The bodies are on disk (staged by `add_async`) before the rows: hold the
            # batch there.
            assert all((store.bodies / f"{a.mid}.eml").exists() for a in fresh)
            writing.set()
            assert release.wait(10)
            real(fresh, staged)

        monkeypatch.setattr(store, "_insert_arrivals", slow)
        old = store.bodies / "99.eml"
        store.bodies.mkdir(parents=True, exist_ok=True)
        old.write_bytes(b"orphan")
        self.age(old)

        async def scenario() -> tuple[int, bool]:
            task = asyncio.ensure_future(store.add_async(arrival(5)))
            while not writing.is_set():
                await asyncio.sleep(0.01)
            swept.append(store.sweep_bodies())
            release.set()
            return await task

        assert asyncio.run(scenario()) == (5, False)
        assert swept == [(1, 0)]
        assert files(store) == ["5.eml"] and store.read_body(5) == body("intake 5")
