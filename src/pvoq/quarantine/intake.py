"""The store's intake: quarantined messages entering the database and the bodies directory.

`Intake` is the part of `QuarantineStore` that adds messages: `add` (one, in
the caller's thread), `add_async` (group-committed by the writer thread of
`arrivals.GroupCommit`, off the event loop), `add_many` (the batch itself:
bodies written and fdatasync'd, one directory fsync, one transaction), the
start-up `sweep_bodies`, and the counter and dictionary helpers the store's
actions share. Durability and failure rules: `arrivals`' docstring.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pvoq import metrics
from pvoq.errors import TemporaryFailure
from pvoq.fsutil import TMP_SUFFIX, fsync_dir
from pvoq.quarantine.arrivals import (
    SYNC_THREADS,
    Arrival,
    BodyCollision,
    BodyFiles,
    GroupCommit,
    arrival_rows,
    remove_bodies,
    stage_body,
)
from pvoq.quarantine.batchsql import BatchSql
from pvoq.quarantine.checkpoint import WalCheckpointer
from pvoq.quarantine.schema import (
    ALL_HELD,
    HELD_BYTES,
    fts,
    messages,
    reasons,
)
from pvoq.quarantine.settings import QuarantineSettings
from pvoq.quarantine.states import State
from pvoq.quarantine.upsert import insert_for
from pvoq.quarantine.words import index_words

SWEEP_MARGIN_S = 2.0  # file times come from a coarse clock: keep clear of a batch starting
# On a database several managers share, their bodies directory may be shared too: the
# sweep takes only bodies older than this, and a batch that took half as long before its
# commit is abandoned instead (its callers hear 451 and the gateways send again).
SHARED_SWEEP_AGE_S = 3600.0


class SlowBatch(TemporaryFailure):
    """A batch took too long to commit safely beside another manager's sweep."""


class Intake:
    """Adding messages (see the module docstring); `QuarantineStore` is one."""

    engine: Engine
    bodies: Path
    bodies_in_db: bool
    inline_max: int  # bodies up to this many bytes go in the database even on disk stores
    clock: Callable[[], float]
    settings: dict[str, QuarantineSettings]
    _committer: GroupCommit | None = None
    _checkpointer: WalCheckpointer | None = None
    _pool: ThreadPoolExecutor | None = None
    _sql: BatchSql | None = None
    _reason_cache: dict[str, int] | None = None  # reason text → id, committed ones only
    # Bodies staged by `add_async` before their batch: id(arrival) → (arrival, its
    # staging (the attachments once durable), when it started).
    _staged: dict[int, tuple[Arrival, Future[list[tuple[str, int]]], float]] | None = None
    # Called inside each batch's transaction with its new arrivals (the manager writes
    # the audit records of migrated messages there: committed with their rows, or not).
    on_batch: Callable[[Connection, Sequence[Arrival]], None] | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def inline(self, arrival: Arrival) -> bool:
        """Whether *arrival*'s body goes in the database, committed with its row (every
        body of a `database` store; a small one of a `disk` store), rather than in a file
        of the bodies directory."""
        return self.bodies_in_db or len(arrival.body) <= self.inline_max

    def close_intake(self) -> None:
        """Commit the arrivals handed in, then stop the writer and the sync threads."""
        if self._committer is not None:
            self._committer.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def find_transfer(self, transfer_id: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(messages.c.id).where(
                messages.c.transfer_id == transfer_id)).scalar()

    def add(self, *, mid: int, meta: dict[str, Any], body: bytes, origin_ip: str,
            subject: str, retention_s: float | None = None) -> tuple[int, bool]:
        """Store a quarantined message durably, in the caller's thread; `(mid, duplicate)`."""
        return self.add_many([Arrival(mid, meta, body, origin_ip, subject, retention_s)])[0]

    async def add_async(self, arrival: Arrival) -> tuple[int, bool]:
        """`add`, group-committed with the arrivals waiting beside it, off the event loop.

        The body is staged at once (written and made durable on a sync thread while
        the arrival waits for its batch); the batch takes it from there."""
        if self._committer is None:
            self._committer = GroupCommit(self.add_many)
            database = self.engine.url.database
            if self.dialect == "sqlite" and database and database != ":memory:":
                self._checkpointer = WalCheckpointer(database)
        if not self.inline(arrival):
            if self._staged is None:
                self._staged = {}
            staging = self._sync_pool().submit(
                stage_body, self.bodies / f"{arrival.mid}.eml", arrival.body)
            self._staged[id(arrival)] = (arrival, staging, time.time())
        return await self._committer.add(arrival)

    def _take_staged(self, arrivals: Sequence[Arrival]
                     ) -> dict[int, Future[list[tuple[str, int]]]]:
        """The stagings of *arrivals* (by id), no longer tracked by the store."""
        taken: dict[int, Future[list[tuple[str, int]]]] = {}
        if not self._staged:
            return taken
        for a in arrivals:
            entry = self._staged.get(id(a))
            if entry is not None and entry[0] is a:
                del self._staged[id(a)]
                taken[id(a)] = entry[1]
        return taken

    @property
    def pending_bytes(self) -> int:
        """Bytes of arrivals handed to `add_async` and not yet committed."""
        return 0 if self._committer is None else self._committer.pending_bytes

    def add_many(self, arrivals: Sequence[Arrival]) -> list[tuple[int, bool]]:
        """Store *arrivals* durably: `(mid, duplicate)` for each, in order.

        A transfer id already stored (or earlier in the batch) is a duplicate.
        The new ones' bodies are written and fdatasync'd, the directory fsync'd
        once, then their rows go in one transaction. If that fails, nothing of
        the batch stays: bodies whose row is known absent are removed (if even
        that cannot be known, the start-up sweep has them) and the error
        propagates. Duplicates are found by the transfer id's unique key, not
        looked up first (a transfer sent again is rare; a lookup per batch is
        not): a conflict rolls the batch back, the transfer ids already stored
        are answered as duplicates and the rest go in again as one batch (a
        conflict on something else is retried one arrival at a time). Only
        when a body file of one of the batch's MIDs exists already (the same
        arrival handed in again) are the transfer ids looked up first, so that
        a stored body is never written over.
        """
        first: dict[str, Arrival] = {}
        for a in arrivals:
            first.setdefault(a.transfer_id, a)
        done: dict[str, tuple[int, bool]] = {}
        fresh = list(first.values())
        staged = self._staged_bodies(arrivals, fresh)
        if any(a.mid not in staged and not self.inline(a)
               and os.path.lexists(self.bodies / f"{a.mid}.eml") for a in fresh):
            # A body of that MID is there already: the same arrival sent again (its
            # stored body must not be written over), or a leftover (never written
            # over either: `BodyCollision`). Look first.
            stored = self._find_transfers(list(first))
            done.update((t, (m, True)) for t, m in stored.items())
            fresh = [a for a in fresh if a.transfer_id not in stored]
            # Stored under another MID (another manager's): the body staged for this
            # one is nobody's.
            strays = [first[t].mid for t, m in stored.items()
                      if first[t].mid in staged and first[t].mid != m]
            remove_bodies([self.bodies / f"{m}.eml" for m in strays])
            for m in strays:
                del staged[m]
        while fresh:  # each round stores the batch or takes at least one arrival out
            try:
                started = metrics.now()
                if staged:
                    self._insert_arrivals(fresh, staged)
                else:
                    self._insert_arrivals(fresh)
                metrics.store_commit(started)
                done.update((a.transfer_id, (a.mid, False)) for a in fresh)
                break
            except IntegrityError:
                staged = {}  # the failed round removed them: the next writes its own
                stored = self._find_transfers([a.transfer_id for a in fresh])
                if stored:
                    done.update((t, (m, True)) for t, m in stored.items())
                    fresh = [a for a in fresh if a.transfer_id not in stored]
                elif len(fresh) > 1:
                    for a in fresh:
                        done[a.transfer_id] = self.add_many([a])[0]
                    break
                else:
                    raise
        return [done[a.transfer_id] if a is first[a.transfer_id]
                else (done[a.transfer_id][0], True) for a in arrivals]

    def _staged_bodies(self, arrivals: Sequence[Arrival], fresh: list[Arrival]
                       ) -> dict[int, list[tuple[str, int]]]:
        """Wait for the batch's staged bodies: `{mid: attachments}` of those durable
        now (a MID whose file was there already is not among them). A staged body of
        an arrival that is not stored (a duplicate in the batch) is removed; if a
        staging failed, every staged body of the batch is removed and the error
        raised (the batch fails)."""
        stagings = self._take_staged(arrivals)
        if not stagings:
            return {}
        keep = {a.mid for a in fresh}
        staged: dict[int, list[tuple[str, int]]] = {}
        written: list[Path] = []
        error: BaseException | None = None
        for a in arrivals:
            staging = stagings.get(id(a))
            if staging is None:
                continue
            try:
                files = staging.result()
            except BodyCollision:  # looked up by `add_many`, never written over
                continue
            except BaseException as exc:  # raised below, once the batch is cleaned up
                error = error or exc
                continue
            path = self.bodies / f"{a.mid}.eml"
            written.append(path)
            if a.mid in keep:
                staged[a.mid] = files
            else:
                remove_bodies([path])
        if error is not None:
            remove_bodies(written)
            raise error
        return staged

    def _find_transfers(self, transfer_ids: list[str]) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {t: int(i) for t, i in conn.execute(
                select(messages.c.transfer_id, messages.c.id)
                .where(messages.c.transfer_id.in_(transfer_ids)))}

    def _insert_arrivals(self, fresh: list[Arrival],
                         staged: dict[int, list[tuple[str, int]]] | None = None) -> None:
        """One round of a batch: the bodies not *staged* (MID → attachments, durable
        already) written and synced, every row inserted, one commit."""
        staged = staged or {}
        started = time.time()
        now = self.clock()
        on_disk = {a.mid: self.bodies / f"{a.mid}.eml" for a in fresh if not self.inline(a)}
        inline = [a for a in fresh if a.mid not in on_disk]
        rows = [arrival_rows(a, now, self.settings, str(on_disk.get(a.mid, "")),
                             staged.get(a.mid)) for a in fresh]
        sql = self._batch_sql()
        files = BodyFiles(self.bodies, self._sync_pool())
        learnt: dict[str, int] = {}
        try:
            for a in fresh:
                path = on_disk.get(a.mid)
                if path is None:
                    continue
                if a.mid in staged:
                    files.adopt(path)
                else:
                    files.write(path, a.body)
            files.start_sync()
            with self.engine.begin() as conn:
                # The rows go in while the bodies sync; the commit waits for the syncs.
                # The messages first: on SQLite that takes the write lock (a read first
                # could not be upgraded once another connection has written).
                conn.exec_driver_sql(sql.messages, sql.message_rows([r.message for r in rows]))
                held = [h for r in rows for h in r.held.values()]
                ids = self._cached_reason_ids(conn, {h["reason"] for h in held}, learnt)
                for h in held:
                    h["reason_id"] = ids[h["reason"]]
                conn.exec_driver_sql(sql.held, sql.rows(held))
                conn.exec_driver_sql(sql.recipients,
                                     sql.rows([x for r in rows for x in r.recipients]))
                parts = [x for r in rows for x in r.attachments]
                if parts:
                    conn.exec_driver_sql(sql.attachments, sql.rows(parts))
                for statement, params in sql.bodies_of([(a.mid, a.body) for a in inline]):
                    conn.exec_driver_sql(statement, params)
                deltas: dict[str, int] = {ALL_HELD: len(rows),
                                          HELD_BYTES: sum(len(a.body) for a in fresh)}
                for h in held:
                    deltas[h["quarantine"]] = deltas.get(h["quarantine"], 0) + 1
                self._count(conn, deltas)
                self._index_many(conn, [(a.mid, r.texts) for a, r in zip(fresh, rows,
                                                                         strict=True)])
                if self.on_batch is not None:
                    self.on_batch(conn, fresh)
                files.wait()
                if self.dialect != "sqlite" and \
                        time.time() - started > SHARED_SWEEP_AGE_S / 2:
                    raise SlowBatch(f"a batch of {len(fresh)} transfers took "
                                    f"{time.time() - started:.0f} s before its commit")
        except BaseException:
            files.close()
            if files.paths:
                self._drop_uncommitted([(a, on_disk[a.mid]) for a in fresh
                                        if a.mid in on_disk])
            raise
        files.close()
        if self._checkpointer is not None:
            self._checkpointer.poke()
        if learnt:  # committed: the reasons added are there for good
            self._reasons_known().update(learnt)

    def _batch_sql(self) -> BatchSql:
        if self._sql is None:
            self._sql = BatchSql.for_dialect(self.dialect)
        return self._sql

    def _reasons_known(self) -> dict[str, int]:
        if self._reason_cache is None:
            self._reason_cache = {}
        return self._reason_cache

    def _cached_reason_ids(self, conn: Connection, texts: set[str],
                           learnt: dict[str, int]) -> dict[str, int]:
        """The reasons' ids: from memory when known (a reason row is never removed nor
        renumbered), from the dictionary otherwise; those read or added there go to
        *learnt*, remembered once the batch has committed (an id added by a batch that
        rolled back would be handed out again)."""
        known = self._reasons_known()
        ids = {t: known[t] for t in texts if t in known}
        missing = sorted(t for t in texts if t not in ids)
        if missing:
            found = self._reason_ids(conn, missing)
            learnt.update(found)
            ids.update(found)
        return ids

    def _sync_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="quarantine-sync")
        return self._pool

    def _drop_uncommitted(self, written: list[tuple[Arrival, Path]]) -> None:
        """After a failed batch: remove the body files whose rows are certainly absent."""
        try:
            stored = self._find_transfers([a.transfer_id for a, _ in written])
        except Exception:
            return  # the database cannot say: the start-up sweep decides
        remove_bodies([p for a, p in written if stored.get(a.transfer_id) != a.mid])

    def sweep_bodies(self) -> tuple[int, int]:
        """Remove bodies no held message has, and temporary files; `(bodies, temps)`.

        Only files in this manager's bodies directory, and only those older
        than the oldest batch (or staged body) in progress in this process (the sweep's start,
        when none is): a body being written has no row yet. On PostgreSQL,
        where managers share the database and may share the directory, only
        bodies older than `SHARED_SWEEP_AGE_S` (another manager's batch in
        progress is younger: see `SlowBatch`); a row of another manager's
        keeps a file of the same name. A body whose message was
        settled (a crash between the settlement's commit and its unlink) goes
        too, and so does a file of a message whose body is in the database (a
        leftover of a failed batch whose transfer came again as a small body). The manager runs it at start-up, before its listeners open.
        """
        if self.bodies_in_db or not self.bodies.is_dir():
            return 0, 0
        oldest = self._committer.oldest_in_flight() if self._committer is not None else None
        staging = [t for _, _, t in list((self._staged or {}).values())]
        if staging:
            oldest = min([*staging, *([] if oldest is None else [oldest])])
        cutoff = time.time() if oldest is None else oldest - SWEEP_MARGIN_S
        if self.dialect != "sqlite":
            cutoff = min(cutoff, time.time() - SHARED_SWEEP_AGE_S)
        candidates: dict[int, Path] = {}
        temps = 0
        for entry in os.scandir(self.bodies):
            try:
                if not entry.is_file(follow_symlinks=False) or \
                        entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
                if entry.name.endswith(TMP_SUFFIX):
                    os.unlink(entry.path)
                    temps += 1
                    continue
            except FileNotFoundError:  # gone meanwhile
                continue
            stem, dot, ext = entry.name.partition(".")
            if dot and ext == "eml" and stem.isdigit():
                candidates[int(stem)] = Path(entry.path)
        live: set[int] = set()
        mids = sorted(candidates)
        with self.engine.connect() as conn:
            for i in range(0, len(mids), 500):
                live.update(int(m) for (m,) in conn.execute(select(messages.c.id).where(
                    messages.c.id.in_(mids[i:i + 500]), messages.c.body_path != "",
                    messages.c.state.in_([State.HELD, State.SETTLING]))))
        orphans = [p for m, p in candidates.items() if m not in live]
        remove_bodies(orphans)
        if orphans or temps:
            fsync_dir(self.bodies)
        return len(orphans), temps

    def _index(self, conn: Connection, mid: int, **texts: str) -> None:
        """SQLite: one message's searchable texts in the trigram tables."""
        self._index_many(conn, [(mid, texts)])

    def _index_many(self, conn: Connection, texts: list[tuple[int, dict[str, str]]]
                    ) -> None:
        """The messages' searchable texts: SQLite's trigram tables, PostgreSQL's words
        (from the rows written already)."""
        if self.dialect != "sqlite":
            index_words(conn, [mid for mid, _ in texts])
            return
        sql = self._batch_sql()
        for name in fts:
            rows = [{"rowid": mid, name: values[name]} for mid, values in texts
                    if values.get(name)]
            if rows:
                conn.exec_driver_sql(sql.fts[name], sql.rows(rows))

    def _reason_ids(self, conn: Connection, texts: list[str]) -> dict[str, int]:
        """The ids of *texts* in the reasons dictionary, adding the new ones."""
        found = {t: int(i) for t, i in conn.execute(
            select(reasons.c.text, reasons.c.id).where(reasons.c.text.in_(texts)))}
        missing = [t for t in texts if t not in found]
        if missing:
            conn.execute(self._insert()(reasons).values([{"text": t} for t in missing])
                         .on_conflict_do_nothing())
            found.update({t: int(i) for t, i in conn.execute(
                select(reasons.c.text, reasons.c.id).where(reasons.c.text.in_(missing)))})
        return found

    def _insert(self) -> Callable[..., Any]:
        """This dialect's INSERT (with ON CONFLICT): SQLite's or PostgreSQL's."""
        return insert_for(self.dialect)

    def _count(self, conn: Connection, deltas: dict[str, int]) -> None:
        """Add *deltas* to the held counters: one upsert for them all, in name order
        (two managers on one PostgreSQL database lock the rows in the same order)."""
        rows = [{"quarantine": name, "n": delta} for name, delta in sorted(deltas.items())
                if delta]
        if rows:
            sql = self._batch_sql()
            conn.exec_driver_sql(sql.count, sql.rows(rows))
