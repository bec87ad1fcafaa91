"""Scanning in worker processes: the pipeline's CPU off the gateway's interpreter.

The gateway's event loop serves every SMTP session, commits the spool and
routes mail; the checks (MIME parsing, filters, URL extraction, outbreak
rules, the clamd client) are Python too. In threads of the same process they
hold the same interpreter lock, and every session then waits for them. Here
each scan runs in a worker process (`python -m pvoq.scan.scanner`, the
worker side, which imports no more than the scans need), which builds its pipelines from the same `ScanSettings` and gives back the
`ScanResult` (or the `ScanError`) the pipeline would have given in-process.

The gateway talks to each worker over its stdin and stdout with the event
loop's own pipes: frames of a 4-byte length and a pickle, a batch of scans
out, their results back in the same order. No thread of the gateway takes
part (threads handing the interpreter lock to and fro cost every session).

- **Batches**: the scans asked for in one turn of the event loop travel
  together, a share for each worker: one round trip per batch.
- **Per-stage timeouts** are the pipeline's, timed in the worker with
  SIGALRM (its main thread): a stage out of time is interrupted, not left
  running in a thread.
- **Outbreak rules**: the gateway reloads its rules file (watcher, `outbreak
  reload`) and then calls `rules_changed`; each worker reloads its own copy
  before its next batch, keeping the rules in force if the file is bad, as
  the gateway does.
- **Per-recipient policies** are named; a worker builds each policy's
  pipeline once (`Pipeline.for_policy`).
- **A worker that dies** (killed, out of memory, a crash in a C library)
  fails the scans it had as a temporary failure (`ScanError`: the messages
  stay in the spool and are scanned again); a new worker is started.
- **A worker stuck** where no stage timeout reaches (a C call that never
  returns) is stopped once a batch has taken longer than all its stages'
  timeouts allow, plus a margin; same outcome.
- **The gateway killed**: a worker's stdin ends, and it exits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import pickle
import sys
from typing import Any

from pvoq.config.model import ScanSettings
from pvoq.scan.message import Envelope
from pvoq.scan.scanner import FRAME, Job, batch_frames, worker_main
from pvoq.scan.verdict import ScanError, ScanResult

MAX_DEFAULT_PROCESSES = 4
PIPE_BYTES = 1 << 20  # the pipe to a worker (Linux's default maximum for a user)
OVERDUE_MARGIN_S = 10.0  # beyond the sum of a batch's stage timeouts, before a worker is stopped
SCANNER_MODULE = "pvoq.scan.scanner"  # what a worker process runs (`python -m`)


class ScannerLost(ScanError):
    """The scanner process died (or was stopped) with this message in its batch."""


# -- the gateway side -----------------------------------------------------------------
def default_processes() -> int:
    """One scanner per CPU beside the one the gateway's event loop keeps busy (at least
    one, at most four): on two CPUs a second scanner only competes with the gateway."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_DEFAULT_PROCESSES, (cpus or 2) - 1))


Waiter = tuple[Job, "asyncio.Future[ScanResult]"]


class _Worker:
    """One worker process and the batches it has not answered yet (in order)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pending: collections.deque[tuple[list[Waiter], asyncio.TimerHandle]] = \
            collections.deque()
        self.reader: asyncio.Task[None] | None = None
        self.writer: asyncio.Task[None] | None = None  # a large batch still being written
        self.alive = True
        self.stopped_because = ""  # set when the gateway stopped it (an overdue batch)

    @property
    def load(self) -> int:
        return sum(len(batch) for batch, _ in self.pending)


class ScanWorkers:
    """Scanner processes for one `ScanSettings` (a reload makes a new set)."""

    def __init__(self, settings: ScanSettings, *, processes: int | None = None) -> None:
        self.settings = settings
        self.processes = max(1, processes or default_processes())
        self._generation = 0
        self._workers: list[_Worker] = []
        self._starting: asyncio.Future[None] | None = None
        self._waiting: list[Waiter] = []
        self._closed = False
        # What one scan may take at most: every stage's timeout.
        self._scan_allowance = (3 * settings.stage_timeout_seconds
                                + settings.antivirus.timeout_seconds)

    async def start(self) -> list[int]:
        """Start the workers (each has built its pipeline when this returns); their PIDs."""
        missing = self.processes - len([w for w in self._workers if w.alive])
        await asyncio.gather(*(self._spawn() for _ in range(missing)))
        return [w.process.pid for w in self._workers if w.alive]

    async def _spawn(self) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", SCANNER_MODULE, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        worker = _Worker(process)
        self._workers.append(worker)
        assert process.stdin is not None and process.stdout is not None
        pipe = process.stdin.transport.get_extra_info("pipe")
        if pipe is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            # A batch of messages in one write, not in 64 KiB pieces.
            with contextlib.suppress(OSError):
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        data = pickle.dumps(self.settings, protocol=pickle.HIGHEST_PROTOCOL)
        process.stdin.write(FRAME.pack(len(data)) + data)
        try:
            await self._read(worker)  # its PID: the pipeline is built
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            worker.alive = False
            self._workers.remove(worker)
            raise ScanError(f"a scanner process could not start: {exc}") from None
        worker.reader = asyncio.ensure_future(self._answers(worker))

    async def _read(self, worker: _Worker) -> Any:
        stdout = worker.process.stdout
        assert stdout is not None
        size = FRAME.unpack(await stdout.readexactly(FRAME.size))[0]
        return pickle.loads(await stdout.readexactly(size))  # our own child

    async def _answers(self, worker: _Worker) -> None:
        try:
            while True:
                self._answered(worker, await self._read(worker))
        except (asyncio.IncompleteReadError, ConnectionError, pickle.UnpicklingError) as exc:
            self._lost(worker, exc)

    @staticmethod
    def _answered(worker: _Worker, results: list[ScanResult | Exception]) -> None:
        """Settle the oldest batch with *results*. (A function of its own: nothing of the
        batch, its bodies among them, stays referenced while the next answer is awaited.)"""
        batch, overdue = worker.pending.popleft()
        overdue.cancel()
        for (_, future), outcome in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _lost(self, worker: _Worker, exc: BaseException | None) -> None:
        """A worker died: a temporary failure for its scans; a new one starts on demand."""
        worker.alive = False
        with contextlib.suppress(ValueError):
            self._workers.remove(worker)
        code = worker.process.returncode
        why = worker.stopped_because or (
            f"exit code {code}" if code is not None else (str(exc) or type(exc).__name__))
        while worker.pending:
            batch, overdue = worker.pending.popleft()
            overdue.cancel()
            for _, future in batch:
                if not future.done():
                    future.set_exception(ScannerLost(
                        f"a scanner process died ({why}); it is started again"))
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()

    def rules_changed(self) -> None:
        """The gateway reloaded its outbreak rules: the workers reload theirs."""
        self._generation += 1

    async def run(self, body: bytes, *, envelope: Envelope | None = None,
                  policy: str | None = None, resume_after: str | None = None,
                  stop_after: str | None = None, skip: tuple[str, ...] = ()) -> ScanResult:
        """Scan one message in a worker; ScanError if a stage (or the worker) could not decide."""
        if self._closed:
            raise ScanError("the scanner processes were stopped (a reload); retried later")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ScanResult] = loop.create_future()
        self._waiting.append(((body, envelope, policy, resume_after, stop_after,
                               tuple(skip)), future))
        if len(self._waiting) == 1:
            loop.call_soon(self._send)
        from pvoq import metrics  # here: the scanner processes never load prometheus-client

        started = metrics.now()
        result = await future
        metrics.scanned(started)
        return result

    def _send(self) -> None:
        alive = [w for w in self._workers if w.alive]
        if len(alive) < self.processes:
            if self._starting is None or self._starting.done():
                self._starting = asyncio.ensure_future(self._restart())
            if not alive:
                return  # sent once a worker is up (_restart calls _send again)
        waiting, self._waiting = self._waiting, []
        share = -(-len(waiting) // len(alive))
        for start in range(0, len(waiting), share):
            worker = min(alive, key=lambda w: w.load)
            batch = waiting[start:start + share]
            stdin = worker.process.stdin
            assert stdin is not None
            frames = batch_frames([job for job, _ in batch], self._generation)
            allowed = len(batch) * self._scan_allowance + OVERDUE_MARGIN_S
            worker.pending.append((batch, asyncio.get_running_loop().call_later(
                allowed, self._overdue, worker, batch, allowed)))
            if worker.writer is not None or sum(map(len, frames)) > PIPE_BYTES:
                self._write_later(worker, frames)
                continue
            try:
                # One system call for the batch (a write per frame woke the scanner for
                # each message and was a twentieth of the gateway's event loop).
                stdin.writelines(frames)
            except (ConnectionError, RuntimeError) as exc:
                self._lost(worker, exc)

    def _write_later(self, worker: _Worker, frames: list[bytes]) -> None:
        """Write a large batch a pipe's worth at a time, each piece once the pipe has taken
        the last (the transport would otherwise copy all of it into its buffer), after
        the batches written this way before it."""
        previous = worker.writer

        async def write() -> None:
            if previous is not None:
                await asyncio.wait([previous])
            stdin = worker.process.stdin
            assert stdin is not None
            try:
                for frame in frames:
                    view = memoryview(frame)
                    for offset in range(0, len(view), PIPE_BYTES):
                        if not worker.alive:
                            return
                        stdin.write(view[offset:offset + PIPE_BYTES])
                        await stdin.drain()
            except (ConnectionError, RuntimeError) as exc:
                if worker.alive:
                    self._lost(worker, exc)
            finally:
                if worker.writer is task:
                    worker.writer = None

        task = worker.writer = asyncio.ensure_future(write())

    def _overdue(self, worker: _Worker, batch: list[Waiter], allowed: float) -> None:
        """A batch took longer than all its stages' timeouts allow: something in the worker
        is stuck where a timeout cannot reach (C code). Stop the worker; its scans fail as
        temporary failures and are retried; a fresh worker takes over."""
        if worker.alive and any(b is batch for b, _ in worker.pending):
            worker.stopped_because = (f"no answer within {allowed:g}s, stopped by the "
                                      f"gateway")
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()

    async def _restart(self) -> None:
        try:
            await self.start()
        except (ScanError, OSError) as exc:
            waiting, self._waiting = self._waiting, []
            for _, future in waiting:
                if not future.done():
                    future.set_exception(ScanError(str(exc)))
            return
        if self._waiting:
            self._send()

    def close(self) -> None:
        """Stop the workers once they answered what they have; start no more."""
        self._closed = True
        for worker in self._workers:
            stdin = worker.process.stdin
            if stdin is not None and not stdin.is_closing():
                stdin.close()  # the worker finishes its batch, then sees the end

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """`close`, then wait for the workers to exit (killed after *timeout_s*)."""
        self.close()
        for worker in list(self._workers):
            try:
                await asyncio.wait_for(worker.process.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                await worker.process.wait()
            if worker.reader is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.reader


if __name__ == "__main__":
    worker_main()
