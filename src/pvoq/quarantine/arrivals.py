"""Arrivals: how quarantined messages enter the store, a batch at a time (group commit).

A CPQ transfer accepted by the manager becomes an `Arrival`. `GroupCommit`
runs one writer thread: it takes every arrival waiting, hands them to the
store as one batch (`QuarantineStore.add_many`: the bodies written, their
fdatasyncs and one fsync of the bodies' directory issued together (`BodyFiles`),
the rows inserted meanwhile and committed in one SQL transaction once the
syncs have returned), then wakes each caller with its result. Transfers that arrive
together therefore share one directory fsync and one commit (one WAL fsync on
SQLite, one WAL flush on PostgreSQL), and the event loop never waits on the
disk or the database for them. A caller hears `(mid, duplicate)` only once
its row and body are durable; if the batch fails, every caller of the batch
gets the error (the CPQ listener answers 451 and the gateway keeps the mail)
and the store has left no body and no row of it behind.

Body files are written in place (`<mid>.eml`, no temporary file and no
rename) and created exclusively: a file of that name already there is never
written over (`BodyCollision`). A body counts only once the row naming it is
committed, which happens after its fsync and the directory's, so a crash
mid-batch leaves bodies without rows, which the manager's start-up sweep
removes (`QuarantineStore.sweep_bodies`), never a row without its body.

An arrival handed in by `add_async` has its body staged at once
(`stage_body`, on the store's sync threads: written, fdatasync'd, its
attachments listed) while it waits for its batch, so a batch mostly finds its
bodies synced already and waits only for the directory's one fsync (issued
as it starts, beside the inserts) and the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pvoq.cpq.bounds import without_nul
from pvoq.errors import TemporaryFailure
from pvoq.quarantine.mime import attachments_of
from pvoq.quarantine.settings import QuarantineSettings, quarantine_for
from pvoq.quarantine.states import State

MAX_BATCH = 256
# A body up to this size is kept in the database beside its row, even on a store with
# bodies on disk: committed with the row, it needs no fdatasync of its own (each costs
# about 0.25 ms of kernel CPU here, more than the rest of storing a 10 KB transfer).
INLINE_BODY_MAX = 64 * 1024
MAX_BATCH_BYTES = 64 * 2**20
SYNC_THREADS = 16  # fsyncs of one batch in flight at once
BODY_MODE = 0o640


class BodyCollision(TemporaryFailure):
    """A body file of that MID exists already: never written over (the transfer fails)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"quarantine body {path} exists already and belongs to no "
                         "transfer of this batch: not written over")
        self.path = path


def create_body(path: Path) -> int:
    """Open a new body file for writing; `BodyCollision` if the name is taken."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, BODY_MODE)
    except FileExistsError:
        raise BodyCollision(path) from None


def write_all(fd: int, body: bytes) -> None:
    view = memoryview(body)
    while view:
        view = view[os.write(fd, view):]


def stage_body(path: Path, body: bytes) -> list[tuple[str, int]]:
    """Write *body* to the new file *path* and fdatasync it (its name is made durable by
    the batch's one directory fsync); its attachments (name, size). On failure the file
    is removed."""
    fd = create_body(path)
    try:
        write_all(fd, body)
        os.fdatasync(fd)
    except BaseException:
        os.close(fd)
        remove_bodies([path])
        raise
    os.close(fd)
    return attachments_of(body)


@dataclass(frozen=True)
class Arrival:
    """One quarantine transfer to store: the manager's MID, the transfer's metadata
    (`QuarantineTransfer.to_json()`), the body, and what the listener saw."""

    mid: int
    meta: dict[str, Any]
    body: bytes
    origin_ip: str
    subject: str
    retention_s: float | None = None
    # A migrated message keeps its clocks: its arrival time, and per quarantine
    # (received_at, scheduled_exit); None: the time of the commit and the retention.
    received_at: float | None = None
    held_times: Mapping[str, tuple[float, float]] | None = None

    @property
    def transfer_id(self) -> str:
        return str(self.meta["transfer_id"])


@dataclass
class ArrivalRows:
    """The rows one arrival adds (built outside the transaction)."""

    message: dict[str, Any]  # `recipients` and `meta` as values (`batchsql.MESSAGE_JSON`)
    held: dict[str, dict[str, Any]]  # quarantine name → message_quarantines row
    recipients: list[dict[str, Any]]
    attachments: list[dict[str, Any]]
    texts: dict[str, str]  # the searchable texts (SQLite's trigram tables)


def arrival_rows(arrival: Arrival, now: float, settings: dict[str, QuarantineSettings],
                 body_path: str, files: list[tuple[str, int]] | None = None) -> ArrivalRows:
    """Every row of *arrival* but the reasons' ids (which need the database); *files*:
    its attachments when already listed. The texts taken from the message itself are
    stored `without_nul` (a NUL failed a PostgreSQL batch at every retry), on every
    database alike."""
    meta = arrival.meta
    mid = arrival.mid
    origin = meta["origin"]
    if files is None:
        files = attachments_of(arrival.body)
    files = [(without_nul(n), size) for n, size in files]
    subject = without_nul(arrival.subject)
    held: dict[str, dict[str, Any]] = {}
    for q in meta["quarantines"]:
        name = quarantine_for(q["name"], settings)
        if name in held:
            continue
        keep = arrival.retention_s if arrival.retention_s is not None \
            else settings[name].retention_s
        entered, leaves = (arrival.held_times or {}).get(q["name"], (now, now + keep))
        held[name] = dict(message_id=mid, quarantine=name, reason=q["reason"], reason_id=None,
                          stage=q["stage"], state=State.HELD, received_at=entered,
                          scheduled_exit=leaves, acted_at=None, how=None)
    message = dict(
        id=mid, transfer_id=meta["transfer_id"], origin_host=origin["hostname"],
        origin_serial=origin["serial"], origin_mid=origin["mid"],
        origin_ip=arrival.origin_ip, sender=meta["sender"],
        recipients=meta["recipients"], subject=subject,
        received_at=now if arrival.received_at is None else arrival.received_at,
        size=len(arrival.body), body_path=body_path, state=State.HELD,
        meta=meta, sender_rev=meta["sender"].lower()[::-1])
    return ArrivalRows(
        message=message, held=held,
        recipients=[dict(message_id=mid, rid=r["rid"], address=r["address"])
                    for r in meta["recipients"]],
        attachments=[dict(message_id=mid, n=i, name=n, size=s, name_rev=n.lower()[::-1])
                     for i, (n, s) in enumerate(files)],
        texts=dict(subject=subject, sender=meta["sender"],
                   recipients=" ".join(r["address"] for r in meta["recipients"])))


class BodyFiles:
    """The body files of one batch: written, then made durable all at once.

    `write` each body (no flush yet), `start_sync` hands every file's
    fdatasync and the directory's fsync to *pool* at once, `wait` returns
    when they all have (or raises the first error). On ext4 concurrent
    fsyncs share one journal commit: a batch of 16 bodies costs about what
    one does, where one after another each costs a commit of its own.
    `close` closes the files; `remove` unlinks them (a failed batch).
    """

    def __init__(self, directory: Path, pool: ThreadPoolExecutor) -> None:
        self.directory = directory
        self.pool = pool
        self.paths: list[Path] = []
        self._fds: list[int] = []
        self._syncs: list[Future[None]] = []

    def write(self, path: Path, body: bytes) -> None:
        fd = create_body(path)  # never over another file: BodyCollision
        self.paths.append(path)
        self._fds.append(fd)
        write_all(fd, body)

    def adopt(self, path: Path) -> None:
        """A body of the batch already durable (`stage_body`): removed if the batch fails."""
        self.paths.append(path)

    def start_sync(self) -> None:
        """Every written file's fdatasync and the directory's fsync (which an adopted
        body needs too), at once."""
        if not self.paths:
            return
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        self._fds.append(fd)
        self._syncs = [self.pool.submit(os.fdatasync, f) for f in self._fds[:-1]]
        self._syncs.append(self.pool.submit(os.fsync, fd))

    def wait(self) -> None:
        for future in self._syncs:
            future.result()

    def close(self) -> None:
        for future in self._syncs:  # never close a file a sync still uses
            with contextlib.suppress(Exception):
                future.result()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def remove(self) -> None:
        """Best effort: unlink the files (what is left is swept at start-up)."""
        self.close()
        remove_bodies(self.paths)


def remove_bodies(paths: Sequence[Path]) -> None:
    """Best effort: unlink *paths* (a failed batch's). What is left is swept at start-up."""
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


@dataclass
class _Waiting:
    arrival: Arrival
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[tuple[int, bool]]
    result: tuple[int, bool] | None = None
    error: BaseException | None = None


def _settle(waiting: list[_Waiting]) -> None:
    for w in waiting:
        if w.future.done():  # the caller was cancelled: the batch was committed all the same
            continue
        if w.error is not None:
            w.future.set_exception(w.error)
        else:
            assert w.result is not None
            w.future.set_result(w.result)


@dataclass
class GroupCommit:
    """The writer thread: batches of arrivals through *commit*, callers woken after.

    *commit* stores a batch and returns `(mid, duplicate)` per arrival, in
    order, or raises (then every arrival of the batch fails with that error).
    """

    commit: Callable[[list[Arrival]], list[tuple[int, bool]]]
    clock: Callable[[], float] = time.time  # real time: compared with file times
    _queue: queue.SimpleQueue[_Waiting | None] = field(default_factory=queue.SimpleQueue)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _in_flight: dict[int, float] = field(default_factory=dict)  # batch number → start
    _batches: int = 0
    _pending_bytes: int = 0

    async def add(self, arrival: Arrival) -> tuple[int, bool]:
        """Store *arrival* with whatever else is waiting; `(mid, duplicate)` once durable.

        Cancelling the caller ends only its wait: the arrival is stored all the
        same (a gateway retrying the transfer then hears it is stored already).
        """
        loop = asyncio.get_running_loop()
        waiting = _Waiting(arrival, loop, loop.create_future())
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="quarantine-commit")
                self._thread.start()
            self._pending_bytes += len(arrival.body)
        self._queue.put(waiting)
        return await waiting.future

    @property
    def pending_bytes(self) -> int:
        """Bytes handed in and not yet committed (for the space quota)."""
        return self._pending_bytes

    def oldest_in_flight(self) -> float | None:
        """When the oldest batch being written started (None: none is)."""
        with self._lock:
            return min(self._in_flight.values(), default=None)

    def close(self) -> None:
        """Store what was handed in, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                return
            batch, size = [first], len(first.arrival.body)
            while len(batch) < MAX_BATCH and size < MAX_BATCH_BYTES:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
                size += len(item.arrival.body)
            self._write(batch, size)
            first = item = None  # no body stays referenced while the next batch is awaited
            batch = []

    def _write(self, batch: list[_Waiting], size: int) -> None:
        with self._lock:
            self._batches += 1
            number = self._batches
            self._in_flight[number] = self.clock()
        try:
            results = self.commit([w.arrival for w in batch])
            for w, result in zip(batch, results, strict=True):
                w.result = result
        except Exception as exc:
            for w in batch:
                w.error = exc
        finally:
            with self._lock:
                del self._in_flight[number]
                self._pending_bytes -= size
        # One wake-up per event loop for the whole batch.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Waiting]] = {}
        for w in batch:
            by_loop.setdefault(w.loop, []).append(w)
        for loop, waiting in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(_settle, waiting)
