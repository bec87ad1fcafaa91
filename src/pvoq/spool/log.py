"""The spool's log: every change to the spool is a record appended to a segment file.

On disk, in `<data>/spool/`: `log-<n>.seg` files, only ever appended to. A
record is a 28-byte header, then its entry (or state) bytes, then its body::

    magic "PVQ1" | kind (1 byte) | 3 pad | CRC-32 | MID (8) | entry length | body length

- `PUT`: a message's entry (JSON) and body; a later PUT of the same MID replaces it;
- `ENTRY`: a new version of a message's entry (its body stays where it was);
- `REMOVE`: the message is gone;
- `STATE`: a small named value of the appliance (the work queue's claims), the
  last one of each name wins.

The CRC covers everything after itself, so a record cut by a crash is seen
for what it is: replay stops there and the segment is truncated to its last
whole record. Nothing was lost by that: a record counts only once an fsync
that covers it has returned, and only then does anyone hear that it did.

**Group commit.** One thread writes: it takes every change waiting, appends
their records with one write, makes them durable with one `fdatasync`, then
applies them to the in-memory index and wakes their callers. Sixteen SMTP
sessions finishing DATA together cost one disk flush, and the filesystem
creates no file per message: on ext4 the inode allocation and freeing of a
file-per-message spool cost more CPU than everything else the gateway does.

**Segments.** The log rolls to a new segment past `segment_bytes`. Each
segment counts the live entries and bodies it holds; the oldest segment is
deleted once nothing in it is live any more (oldest first, each deletion made
durable before the next, so replay never sees a record whose removal was in a
segment already gone). When the oldest segment is mostly dead, or the log
as a whole is (the oldest then pins younger dead segments), the messages
still living in the oldest are copied forward (a new PUT) so it can go: the
log stays within about twice what is live, plus a segment or two.

This module knows nothing of recipients or delivery; `store.Spool` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import struct
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pvoq import metrics
from pvoq.errors import PvoqError
from pvoq.fsutil import fsync_dir

MAGIC = b"PVQ1"
HEADER = struct.Struct(">4sB3xIqII")
PUT, ENTRY, REMOVE, STATE = 1, 2, 3, 4
KINDS = (PUT, ENTRY, REMOVE, STATE)
SEGMENT_BYTES = 64 * 1024 * 1024
MAX_BATCH = 512
COMPACT_BELOW = 0.5  # the oldest segment's live share under which its messages move forward


class SpoolLogError(PvoqError):
    """The log cannot be used (e.g. a second writer, or a read-only log asked to write)."""


@dataclass(frozen=True)
class Record:
    kind: int
    mid: int = 0
    entry: bytes = b""   # for STATE: the name, a newline, the value
    body: bytes = b""

    def encode(self) -> bytes:
        return b"".join(self.parts())

    def parts(self) -> tuple[bytes, bytes, bytes]:
        """The record as written: header, entry, body (not joined: a body may be large)."""
        rest = struct.pack(">qII", self.mid, len(self.entry), len(self.body))
        crc = zlib.crc32(self.body, zlib.crc32(self.entry, zlib.crc32(bytes([self.kind]) + rest)))
        return (HEADER.pack(MAGIC, self.kind, crc, self.mid, len(self.entry), len(self.body)),
                self.entry, self.body)

    @property
    def size(self) -> int:
        return HEADER.size + len(self.entry) + len(self.body)


@dataclass(frozen=True)
class Place:
    """Where bytes live: segment number, offset, length."""

    seg: int
    offset: int
    length: int


@dataclass
class _Item:
    entry: Place
    body: Place


@dataclass
class _Change:
    records: list[Record]
    done: asyncio.Future[None] | threading.Event
    loop: asyncio.AbstractEventLoop | None = None
    then: Callable[[], None] | None = None
    error: BaseException | None = None

    def settle(self) -> None:
        if self.then is not None and self.error is None:
            self.then()  # whether or not its caller still waits
        if isinstance(self.done, threading.Event):
            self.done.set()
        elif not self.done.done():
            if self.error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(self.error)


@dataclass
class _Segment:
    number: int
    path: Path
    size: int = 0
    live: Counter[str] = field(default_factory=Counter)  # "refs", "bytes"


def _write_all(fd: int, parts: list[bytes]) -> None:
    """Write *parts* in order with as few system calls as the kernel allows, without
    joining them into one copy (a message body may be tens of megabytes)."""
    views = [memoryview(p) for p in parts]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]


_IOV_MAX = 1024


def _settle_all(changes: list[_Change]) -> None:
    for change in changes:
        change.settle()


def decode(data: bytes, offset: int) -> tuple[Record, int, int] | None:
    """The record at *offset* of *data*, its entry's offset, and the next offset; None if torn."""
    end_header = offset + HEADER.size
    if end_header > len(data):
        return None
    magic, kind, crc, mid, entry_len, body_len = HEADER.unpack_from(data, offset)
    end = end_header + entry_len + body_len
    if magic != MAGIC or kind not in KINDS or end > len(data):
        return None
    rest = struct.pack(">qII", mid, entry_len, body_len)
    entry = data[end_header:end_header + entry_len]
    body = data[end_header + entry_len:end]
    if zlib.crc32(body, zlib.crc32(entry, zlib.crc32(bytes([kind]) + rest))) != crc:
        return None
    return Record(kind, mid, entry, body), end_header, end


class BodyFile:
    """A message's body in its segment file, read a piece at a time (`pieces`) instead of
    whole. It has a file descriptor of its own: the segment may be deleted meanwhile
    (compaction copies the message forward), its bytes stay readable until `close`."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self._fd = fd
        self.offset = offset
        self.size = length

    def __enter__(self) -> BodyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def _pread(self, length: int, at: int) -> bytes:
        data = os.pread(self._fd, length, self.offset + at)
        if len(data) != length:
            raise OSError(f"a spool segment is shorter than its index says ({len(data)} "
                          f"of {length} bytes at {self.offset + at})")
        return data

    def read(self) -> bytes:
        return self._pread(self.size, 0)

    def pieces(self, chunk: int = 256 * 1024) -> Iterator[bytes]:
        """The body in pieces of about *chunk* bytes, each but the last cut after a CRLF
        (or, in a line longer than *chunk*, anywhere but between a CR and its LF)."""
        at, carry = 0, b""
        while at < self.size:
            data = self._pread(min(chunk, self.size - at), at)
            at += len(data)
            data = carry + data if carry else data
            carry = b""
            if at < self.size:
                cut = data.rfind(b"\r\n")
                if cut >= 0:
                    data, carry = data[:cut + 2], data[cut + 2:]
                elif data.endswith(b"\r"):
                    data, carry = data[:-1], b"\r"
            if data:
                yield data
        if carry:
            yield carry


class SpoolLog:
    """The segment files, their index (MID → entry and body places), and the writer thread."""

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES,
                 readonly: bool = False) -> None:
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes
        self.readonly = readonly
        self.damaged: list[str] = []  # what replay had to cut, for the caller to log
        self._items: dict[int, _Item] = {}
        self._states: dict[str, tuple[bytes, Place]] = {}
        self._segments: dict[int, _Segment] = {}
        self._readers: dict[int, int] = {}
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Change | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._fd = -1
        self._replay()
        if not readonly:
            self._open_current()

    # -- reading ----------------------------------------------------------------
    def mids(self) -> list[int]:
        with self._lock:
            return sorted(self._items)

    def __contains__(self, mid: int) -> bool:
        return mid in self._items

    def entry(self, mid: int) -> bytes | None:
        with self._lock:
            item = self._items.get(mid)
            return None if item is None else self._read(item.entry)

    def body(self, mid: int) -> bytes:
        with self._lock:
            item = self._items.get(mid)
            if item is None:
                raise FileNotFoundError(f"MID {mid} is not in the spool")
            return self._read(item.body)

    def open_body(self, mid: int) -> BodyFile:
        """*mid*'s body where it lies, to be read a piece at a time (`BodyFile`)."""
        with self._lock:
            item = self._items.get(mid)
            if item is None:
                raise FileNotFoundError(f"MID {mid} is not in the spool")
            place = item.body
            fd = self._readers.get(place.seg)
            if fd is None:
                fd = self._readers[place.seg] = os.open(self._segments[place.seg].path,
                                                        os.O_RDONLY)
            return BodyFile(os.dup(fd), place.offset, place.length)

    def entries(self) -> Iterator[tuple[int, bytes]]:
        for mid in self.mids():
            data = self.entry(mid)
            if data is not None:
                yield mid, data

    def state(self, name: str) -> bytes | None:
        with self._lock:
            found = self._states.get(name)
            return None if found is None else found[0]

    def _read(self, place: Place) -> bytes:
        fd = self._readers.get(place.seg)
        if fd is None:
            fd = self._readers[place.seg] = os.open(self._segments[place.seg].path, os.O_RDONLY)
        data = os.pread(fd, place.length, place.offset)
        if len(data) != place.length:
            raise OSError(f"spool segment {place.seg} is shorter than its index says")
        return data

    # -- writing ----------------------------------------------------------------
    async def commit_async(self, records: list[Record], *,
                           then: Callable[[], None] | None = None) -> None:
        """Append *records*; return once they survive a crash (group-committed).

        *then* runs on the event loop as soon as the records are durable, even
        if the caller was cancelled meanwhile (a client that left): what must
        follow a commit cannot be forgotten. Cancelling the caller only ends
        its wait; the writer makes the change all the same.
        """
        loop = asyncio.get_running_loop()
        change = _Change(records, loop.create_future(), loop, then)
        self._submit(change)
        assert isinstance(change.done, asyncio.Future)
        await change.done

    def commit_soon(self, records: list[Record], *,
                    on_error: Callable[[BaseException], None],
                    then: Callable[[], None] | None = None) -> None:
        """Hand *records* to the writer and return at once (blocking outside an event loop).

        For a change whose loss in a crash only repeats work, never loses mail:
        a delivered message's removal, a delivery attempt's new state. The log
        keeps the order of what it is handed, so a later change of the same
        message never lands before this one; `close` commits it before stopping.
        *on_error* hears of a failed commit, on the event loop; *then* runs there once
        the records are durable.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                self.commit(records)
            except Exception as exc:
                on_error(exc)
            else:
                if then is not None:
                    then()
            return
        change = _Change(records, loop.create_future(), loop, then)
        assert isinstance(change.done, asyncio.Future)

        def settled(done: asyncio.Future[None]) -> None:
            if not done.cancelled() and done.exception() is not None:
                on_error(done.exception())  # type: ignore[arg-type]

        change.done.add_done_callback(settled)
        self._submit(change)

    def commit(self, records: list[Record]) -> None:
        """`commit_async` for a caller that may block (start-up, tests, rare paths)."""
        change = _Change(records, threading.Event())
        self._submit(change)
        assert isinstance(change.done, threading.Event)
        change.done.wait()
        if change.error is not None:
            raise change.error

    def _submit(self, change: _Change) -> None:
        if self.readonly:
            raise SpoolLogError(f"{self.dir}: the spool was opened read-only")
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._write_forever, daemon=True,
                                                    name="spool-log")
                    self._thread.start()
        self._queue.put(change)

    def close(self) -> None:
        """Commit what was handed in, stop the writer, close the files."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()
        with self._lock:
            for fd in self._readers.values():
                os.close(fd)
            self._readers.clear()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _write_forever(self) -> None:
        while True:
            first = self._queue.get()
            if first is None or self._write_round(first):
                return
            del first  # nothing of a batch stays referenced while the next one is awaited

    def _write_round(self, first: _Change) -> bool:
        """Write *first* and every change waiting behind it; True if told to stop. (Its
        own frame, so that its records, a body of tens of MB among them, go with it.)"""
        batch, stop = [first], False
        while len(batch) < MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            batch.append(item)
        self._write_batch(batch)
        # One wake-up per event loop for the whole batch: each call_soon_threadsafe
        # is a system call, after which this thread waits for the interpreter lock
        # again while the busy event loop holds it.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Change]] = {}
        for change in batch:
            if change.loop is None:
                change.settle()
            else:
                by_loop.setdefault(change.loop, []).append(change)
        for loop, changes in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(_settle_all, changes)
        if not stop:
            self._maintain()
        return stop

    def _write_batch(self, batch: list[_Change]) -> None:
        started = metrics.now()
        try:
            self._append([r for change in batch for r in change.records])
            metrics.spool_commit(started)
        except OSError as exc:
            for change in batch:
                change.error = exc

    def _append(self, records: list[Record]) -> None:
        """Write, fdatasync, then index *records*; on failure the segment is cut back."""
        if not records:
            return
        current = self._segments[max(self._segments)]
        if current.size >= self.segment_bytes:
            self._roll()
            current = self._segments[max(self._segments)]
        start = current.size
        try:
            _write_all(self._fd, [part for r in records for part in r.parts() if part])
            os.fdatasync(self._fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise
        with self._lock:
            offset = start
            for record in records:
                self._apply(record, current, offset + HEADER.size)
                offset += record.size
            current.size = offset

    def _roll(self) -> None:
        number = max(self._segments) + 1 if self._segments else 1
        path = self.dir / f"log-{number:08d}.seg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        fsync_dir(self.dir)
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = fd
            self._segments[number] = _Segment(number, path)

    def _open_current(self) -> None:
        if not self._segments:
            self._roll()
            return
        current = self._segments[max(self._segments)]
        self._fd = os.open(current.path, os.O_WRONLY | os.O_APPEND)
        self._delete_dead()

    # -- the index --------------------------------------------------------------
    def _apply(self, record: Record, segment: _Segment, at: int) -> None:
        """Make the index reflect *record*, stored in *segment* with its entry at *at*."""
        if record.kind == PUT:
            self._forget(record.mid)
            entry = Place(segment.number, at, len(record.entry))
            body = Place(segment.number, at + len(record.entry), len(record.body))
            self._items[record.mid] = _Item(entry, body)
            self._ref(entry, 1)
            self._ref(body, 1)
        elif record.kind == ENTRY:
            item = self._items.get(record.mid)
            if item is not None:  # else: the message went before (e.g. a late update)
                self._ref(item.entry, -1)
                item.entry = Place(segment.number, at, len(record.entry))
                self._ref(item.entry, 1)
        elif record.kind == REMOVE:
            self._forget(record.mid)
        elif record.kind == STATE:
            name, _, value = record.entry.partition(b"\n")
            key = name.decode()
            old = self._states.get(key)
            if old is not None:
                self._ref(old[1], -1)
            place = Place(segment.number, at, len(record.entry))
            self._states[key] = (value, place)
            self._ref(place, 1)

    def _forget(self, mid: int) -> None:
        item = self._items.pop(mid, None)
        if item is not None:
            self._ref(item.entry, -1)
            self._ref(item.body, -1)

    def _ref(self, place: Place, delta: int) -> None:
        live = self._segments[place.seg].live
        live["refs"] += delta
        live["bytes"] += delta * place.length

    # -- replay and maintenance -------------------------------------------------
    def _replay(self) -> None:
        paths = sorted(self.dir.glob("log-*.seg"))
        for n, path in enumerate(paths):
            try:
                number = int(path.stem.split("-", 1)[1])
            except ValueError:
                continue
            segment = self._segments[number] = _Segment(number, path)
            data = path.read_bytes()
            offset = 0
            while offset < len(data):
                decoded = decode(data, offset)
                if decoded is None:
                    break
                record, at, offset = decoded
                self._apply(record, segment, at)
            segment.size = offset
            if offset < len(data):
                last = n == len(paths) - 1
                if not last:
                    why = "kept"
                elif self.readonly:
                    why = "a write in progress, or cut by a crash: the next start removes it"
                else:
                    why = "a write cut by a crash, removed"
                self.damaged.append(f"{path.name}: {len(data) - offset} bytes after offset "
                                    f"{offset} are not a whole record ({why})")
                if last and not self.readonly:
                    with open(path, "r+b") as f:  # the tail nobody was told about
                        f.truncate(offset)
                        os.fsync(f.fileno())

    def _maintain(self) -> None:
        """Between batches: move the last messages out of a mostly dead oldest segment,
        and delete the oldest segments nothing lives in."""
        try:
            self._compact()
            self._delete_dead()
        except OSError:
            pass  # the disk is unwell: the next batch's commit reports it to its callers

    def _compact(self) -> None:
        if len(self._segments) < 3:
            return
        oldest = self._segments[min(self._segments)]
        live = sum(s.live["bytes"] for s in self._segments.values())
        size = sum(s.size for s in self._segments.values())
        # The oldest segment is mostly dead, or it pins younger dead ones (segments go
        # oldest first): either way its live messages move forward and it can go.
        if (oldest.live["bytes"] >= COMPACT_BELOW * max(oldest.size, 1)
                and live >= COMPACT_BELOW * size):
            return
        with self._lock:
            moving = [mid for mid, item in self._items.items()
                      if oldest.number in (item.entry.seg, item.body.seg)]
            records = [Record(PUT, mid, self._read(self._items[mid].entry),
                              self._read(self._items[mid].body)) for mid in moving]
            records += [Record(STATE, 0, name.encode() + b"\n" + value)
                        for name, (value, place) in self._states.items()
                        if place.seg == oldest.number]
        self._append(records)

    def _delete_dead(self) -> None:
        while len(self._segments) > 1:
            oldest = self._segments[min(self._segments)]
            if oldest.live["refs"] > 0:
                return
            with self._lock:
                fd = self._readers.pop(oldest.number, None)
                if fd is not None:
                    os.close(fd)
                del self._segments[oldest.number]
            oldest.path.unlink(missing_ok=True)
            fsync_dir(self.dir)  # durable before a younger segment may go
