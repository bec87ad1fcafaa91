"""The gateway's work queue: incoming messages wait here until one `dispose` has handled them.

Shaped like Mailman 3's runner: a loop takes work and hands each message to
one hook, `dispose(entry, body)`, which does the work (for the gateway: scan
it and route it, `gateway.processing`); what the hook cannot finish is kept
and tried again, and a message that keeps crashing is shunted aside, to
`spool/bad/`, for an operator. The queue knows nothing of scanning or routing
beyond the failures a scan may report (`scan.verdict.ScanError`, a scanner
process lost with `scan.workers.ScannerLost`).

It owns:

- batches: up to `BATCH` messages taken together (one claim, one round trip to
  the scanners), up to `IN_FLIGHT` batches under way at once;
- claims (`spool.claims`): a batch is claimed before its work and released
  after, so that the messages under way when the process died are known at the
  next start ("suspects"), each then handled alone, each claim raising its
  count, until one that stopped the gateway `MAX_ATTEMPTS` times goes to bad;
- scanner losses: a message whose batch lost its scanner process is handled
  again alone, and after `MAX_ATTEMPTS` losses goes to bad;
- temporary failures and application faults: the message stays in the spool,
  untouched, and is submitted again after a delay; a message that has failed
  `max_failures()` times *while other messages passed* is handed to the
  `unscannable` hook instead (its configured unscannable action). A failure
  counts only if some other message was disposed of since this one's last
  counted failure: while nothing passes (clamd down for everyone) mail is
  held, never given up on;
- a message that vanished from the spool (`deleterecipients`) is forgotten
  when its turn comes;
- the body cache (a listener hands over the body it has just spooled), the
  depth (`workqueue status`, the status gauge) and pause/resume.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from pvoq.maillog import MailLog
from pvoq.scan.verdict import ScanError
from pvoq.scan.workers import ScannerLost
from pvoq.spool.claims import MAX_ATTEMPTS, Claims
from pvoq.spool.store import INCOMING, Entry, Spool

BATCH = 16  # messages taken from the work queue together (one claim, one round trip)
IN_FLIGHT = 4  # batches under way at once
BODY_CACHE = 512  # bodies of queued messages kept in memory (the spool has them anyway)


class Dispose(Protocol):
    """The work done on one message: returns the new messages it made that need the
    work queue too (e.g. the parts of a split), which are submitted in turn.

    Raising `ScanError` (a temporary failure) or any other exception leaves the
    message in the spool, to be tried again; `ScannerLost` makes it a suspect."""

    def __call__(self, entry: Entry, body: bytes) -> Awaitable[Sequence[Entry]]: ...


class GiveUp(Protocol):
    """What becomes of a message that failed too often: *reason* says why (the
    gateway: its unscannable action)."""

    def __call__(self, entry: Entry, body: bytes, reason: str) -> Awaitable[object]: ...


class WorkQueue:
    """Messages waiting for `dispose`, taken in claimed batches by one loop (`run`).

    `submit` queues a message; `start`/`stop` run the loop as a task;
    `pause`/`resume` hold it (received mail waits in the spool); `recover`
    takes the incoming messages found in the spool at start, `depth` counts
    what waits or is under way.
    """

    def __init__(self, *, spool: Spool, maillog: MailLog, dispose: Dispose,
                 retry_s: Callable[[], float], unscannable: GiveUp | None = None,
                 max_failures: Callable[[], int] = lambda: 5) -> None:
        self.spool = spool
        self.maillog = maillog
        self.dispose = dispose
        self.retry_s = retry_s  # the current configuration's scan retry delay
        self.unscannable = unscannable
        self.max_failures = max_failures  # counted temporary failures before `unscannable`
        self._failures: dict[int, tuple[int, int]] = {}  # MID: (counted, successes then)
        self._successes = 0  # messages disposed of, for the failure count's rule
        self._retrying: dict[int, Entry] = {}  # waiting for their retry delay
        self._under_way: set[int] = set()  # in `dispose` now
        self.claims = Claims(spool)
        self._work: asyncio.Queue[Entry | None] = asyncio.Queue()  # None: wakes for suspects
        self._suspects: list[Entry] = []
        self._scanner_losses: dict[int, int] = {}
        self._bodies: dict[int, bytes] = {}
        self._in_work = 0
        self._open = asyncio.Event()
        self._open.set()
        self._task: asyncio.Task[None] | None = None

    # -- what goes in -----------------------------------------------------------
    def submit(self, entry: Entry, body: bytes | None = None) -> None:
        """Queue *entry*; *body*, when given, saves reading it back from disk."""
        if body is not None and len(self._bodies) < BODY_CACHE:
            self._bodies[entry.mid] = body
        self._work.put_nowait(entry)

    def add_suspect(self, entry: Entry) -> None:
        """Queue *entry* to be handled alone, nothing else under way at the same time."""
        self._suspects.append(entry)
        self._work.put_nowait(None)  # wakes the loop if it waits for mail

    def recover(self, entries: list[Entry]) -> None:
        """Take the incoming messages found in the spool at start.

        Those claimed when the process died are suspects (handled alone); one
        that has stopped the gateway `MAX_ATTEMPTS` times moves to `spool/bad/`.
        """
        self.claims.keep_only({e.mid for e in entries})
        suspects = self.claims.suspects()
        for entry in entries:
            if self.claims.attempts(entry.mid) >= MAX_ATTEMPTS:
                bad = self.spool.move_to_bad(entry.mid)
                self.maillog.critical(
                    f"MID {entry.mid} moved to {bad}: processing it stopped the gateway "
                    f"{self.claims.attempts(entry.mid)} times; kept there for an operator")
            elif entry.mid in suspects:
                self._suspects.append(entry)  # processed alone, to find a poison message
            else:
                self.submit(entry)

    # -- state ----------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Messages waiting or under way (`workqueue status`, the status gauge), those
        waiting for a retry after a temporary failure included."""
        return self._work.qsize() + self._in_work + len(self._suspects) + len(self._retrying)

    @property
    def retrying(self) -> int:
        """Messages waiting for a retry after a temporary failure."""
        return len(self._retrying)

    @property
    def paused(self) -> bool:
        return not self._open.is_set()

    def pause(self) -> bool:
        """Hold the loop (batches under way finish); False if it was already paused."""
        if self.paused:
            return False
        self._open.clear()
        return True

    def resume(self) -> bool:
        """Let the loop go on; False if it was not paused."""
        if not self.paused:
            return False
        self._open.set()
        return True

    # -- the loop -----------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="pipeline")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        """Take batches: claim them, hand their messages to `dispose` side by side.

        Up to `IN_FLIGHT` batches are under way at once, so that one batch's
        scans overlap another's spool commits. Suspects go one at a time,
        alone, each claim raising its count; see `spool.claims`.
        """
        slots = asyncio.Semaphore(IN_FLIGHT)
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self._open.wait()
                if self._suspects:
                    if running:
                        await asyncio.wait(running)  # a suspect is processed alone
                    batch = [self._suspects.pop(0)]
                    self._in_work += 1
                    await self._process_batch(batch)
                    continue
                first = await self._work.get()
                if first is None:
                    continue  # a wake-up: suspects are waiting
                batch = [first]
                while len(batch) < BATCH and not self._work.empty():
                    item = self._work.get_nowait()
                    if item is not None:
                        batch.append(item)
                self._in_work += len(batch)
                await self._open.wait()  # paused while this batch was being taken
                await slots.acquire()
                task = asyncio.ensure_future(self._process_batch(batch))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _: slots.release())
        finally:
            for task in running:
                task.cancel()

    async def _process_batch(self, batch: list[Entry]) -> None:
        mids = [e.mid for e in batch]
        try:
            await self.claims.claim_async(mids)
        except OSError as exc:  # e.g. a full disk: keep the batch, try again shortly
            self.maillog.critical(f"Work queue: cannot record claims ({exc}); "
                                  f"{len(batch)} messages wait in the spool")
            self._in_work -= len(batch)
            for entry in batch:
                self.submit(entry)
            await asyncio.sleep(self.retry_s())
            return
        try:
            await asyncio.gather(*(self._process_one(e) for e in batch))
        finally:
            self.claims.done(mids)

    async def _process_one(self, entry: Entry) -> None:
        # Each message leaves `_in_work` as soon as its own turn ends, not with its batch:
        # one waiting for a retry (or already queued again) is counted there, once.
        try:
            if entry.mid not in self.spool:
                self._forget(entry.mid)  # deleted (deleterecipients) while it waited
                return
            self._under_way.add(entry.mid)
            try:
                await self._dispose_one(entry)
            finally:
                self._under_way.discard(entry.mid)
        finally:
            self._in_work -= 1

    async def _dispose_one(self, entry: Entry) -> None:
        body = b""
        try:
            cached = self._bodies.pop(entry.mid, None)
            body = cached if cached is not None else self.spool.read_body(entry.mid)
            made = await self.dispose(entry, body)
            self._scanner_losses.pop(entry.mid, None)
            self._failures.pop(entry.mid, None)
            self._successes += 1
        except ScannerLost as exc:
            self._scanner_lost(entry, exc)
            return
        except ScanError as exc:
            # Fail closed: the entry stays INCOMING in the spool and is scanned again.
            what = f"temporary failure in {exc.stage or 'the pipeline'}: {exc}"
            if await self._gave_up(entry, body, what):
                return
            retry_s = self.retry_s()
            self.maillog.warning(f"MID {entry.mid} {what}; message kept in the spool, "
                                 f"retry in {retry_s:g}s")
            self._retry_later(entry, retry_s)
            return
        except Exception as exc:  # keep the message; never lose it to a bug
            what = f"application fault in the pipeline: {type(exc).__name__}: {exc}"
            if await self._gave_up(entry, body, what):
                return
            retry_s = max(self.retry_s(), 60.0)
            self.maillog.critical(f"MID {entry.mid} {what}; message kept in the spool, "
                                  f"retry in {retry_s:g}s")
            self._retry_later(entry, retry_s)
            return
        for new in made:
            self.submit(new)

    # -- failures ---------------------------------------------------------------------
    def _retry_later(self, entry: Entry, delay_s: float) -> None:
        self._retrying[entry.mid] = entry
        asyncio.get_running_loop().call_later(delay_s, self._retry, entry.mid)

    def _retry(self, mid: int) -> None:
        entry = self._retrying.pop(mid, None)
        if entry is not None:
            self.submit(entry)

    def _forget(self, mid: int) -> None:
        self._failures.pop(mid, None)
        self._scanner_losses.pop(mid, None)
        self._bodies.pop(mid, None)
        self._retrying.pop(mid, None)

    def forget(self, mid: int) -> bool:
        """Drop *mid* from the retries waiting (its message was deleted); True if it waited."""
        waiting = mid in self._retrying
        self._forget(mid)
        return waiting

    # -- what the operator commands see and delete -------------------------------------
    def held(self) -> list[Entry]:
        """Every message the work queue holds (in the spool, not yet routed: waiting,
        under way, suspects, waiting for a retry), oldest first."""
        found = []
        for mid in self.spool.mids():
            entry = self.spool.get(mid)
            if entry is not None and entry.state == INCOMING:
                found.append(entry)
        found.sort(key=lambda e: (e.received, e.mid))
        return found

    async def delete(self, mid: int) -> bool:
        """Remove *mid* from the spool unless `dispose` has it now (False: it is being
        scanned; it will be in a delivery queue or gone shortly). The work queue
        forgets it; if it is still queued, its turn finds it gone."""
        if mid in self._under_way or mid not in self.spool:
            return False
        await self.spool.remove_async(mid)
        self._forget(mid)
        return True

    def waiting_retry(self) -> list[Entry]:
        """The messages waiting for a retry after a temporary failure."""
        return list(self._retrying.values())

    async def _gave_up(self, entry: Entry, body: bytes, what: str) -> bool:
        """Count a failure of *entry*; at `max_failures()` hand it to `unscannable`.

        A failure counts when another message was disposed of since this one's
        last counted failure (the first always counts): the fault is then this
        message's, not the scanners'. False: retry it later.
        """
        counted, seen = self._failures.get(entry.mid, (0, -1))
        if seen < self._successes or counted == 0:
            counted, seen = counted + 1, self._successes
        self._failures[entry.mid] = (counted, seen)
        if self.unscannable is None or counted < self.max_failures() or not body:
            return False
        self._failures.pop(entry.mid, None)
        self.maillog.warning(f"MID {entry.mid} {what}; {counted} temporary failures while "
                             f"other mail passed: unscannable")
        try:
            await self.unscannable(entry, body, f"{counted} temporary failures (last: {what})")
        except Exception as exc:  # the unscannable action itself failed: keep it, retry
            self.maillog.critical(f"MID {entry.mid} unscannable action failed: "
                                  f"{type(exc).__name__}: {exc}; message kept in the spool")
            return False
        return True

    def _scanner_lost(self, entry: Entry, exc: ScannerLost) -> None:
        """A scanner process died with *entry* in its batch: handle it again alone.

        Every message of that batch is a suspect: each is scanned again on its
        own (as after a crash of the gateway), so an innocent neighbour passes,
        and a message that has now stopped a scanner `MAX_ATTEMPTS` times moves
        to `spool/bad/` instead of stopping the next one.
        """
        mid = entry.mid
        lost = self._scanner_losses[mid] = self._scanner_losses.get(mid, 0) + 1
        if lost >= MAX_ATTEMPTS:
            self._scanner_losses.pop(mid, None)
            bad = self.spool.move_to_bad(mid)
            self.maillog.critical(f"MID {mid} moved to {bad}: scanning it stopped a scanner "
                                  f"process {lost} times; kept there for an operator")
            return
        self.maillog.warning(f"MID {mid} temporary failure in the pipeline: {exc}; message "
                             f"kept in the spool, scanned again alone")
        self.add_suspect(entry)
