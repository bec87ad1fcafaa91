"""Scanning in worker processes: the pipeline's CPU off the gateway's interpreter.

The gateway's event loop serves every SMTP session, commits the spool and
routes mail; the checks (MIME parsing, filters, URL extraction, outbreak
rules, the clamd client) are Python too. In threads of the same process they
hold the same interpreter lock, and every session then waits for them: the
gateway ingested mail at a third of a bare SMTP sink's rate with a core idle.
Here each scan runs in a worker process of its own (`ScanWorkers.run`), which
builds its pipelines from the same `ScanSettings` and gives back the
`ScanResult` (or the `ScanError`) the pipeline would have given in-process.

- **Per-stage timeouts** are the pipeline's own, inside the worker.
- **Outbreak rules**: the gateway reloads its rules file (watcher, `outbreak
  reload`) and then calls `rules_changed`; each worker reloads its own copy
  before its next scan, keeping the rules in force if the file is bad, as the
  gateway does.
- **Per-recipient policies** are named; a worker builds each policy's
  pipeline once (`Pipeline.for_policy`).
- **A worker that dies** (killed, out of memory, a crash in a C library)
  fails the scans it had as a temporary failure (`ScanError`: the messages
  stay in the spool and are scanned again); the pool is started afresh.
- **The gateway killed**: each worker watches its parent and exits when it
  is gone, so no scanner outlives its gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pvoq.config.model import ScanSettings
from pvoq.scan.message import Envelope
from pvoq.scan.outbreak import RulesError
from pvoq.scan.pipeline import Pipeline
from pvoq.scan.verdict import ScanError, ScanResult

DEFAULT_PROCESSES = 2

# -- the worker side (module state of each worker process) --------------------------
_worker: dict[str, Any] = {}


def _init_worker(settings: ScanSettings, parent: int) -> None:
    _worker.update(settings=settings, pipelines={}, generation=0)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="parent-watch").start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)  # the gateway is gone: nobody will read what this worker does


def _pipeline(policy: str | None) -> Pipeline:
    pipelines: dict[str | None, Pipeline] = _worker["pipelines"]
    found = pipelines.get(policy)
    if found is None:
        if None not in pipelines:
            pipelines[None] = Pipeline(_worker["settings"])
        base = pipelines[None]
        if policy is None:
            return base
        settings: ScanSettings = _worker["settings"]
        match = next((p for p in settings.policies if p.name == policy), None)
        found = pipelines[policy] = base if match is None else base.for_policy(match)
    return found


# body, envelope, policy, resume_after, stop_after, skip
Job = tuple[bytes, Envelope | None, str | None, str | None, str | None, tuple[str, ...]]


def _scan_many(jobs: list[Job], generation: int) -> list[ScanResult | Exception]:
    """Scan several messages (one round trip for a batch); each gives a result or its error."""
    base = _pipeline(None)
    if generation != _worker["generation"]:
        _worker["generation"] = generation
        # The policies' pipelines share these rules. A RulesError: the gateway
        # refused this file too, and the rules in force stay.
        with contextlib.suppress(RulesError):
            base.reload_rules()
    results: list[ScanResult | Exception] = []
    for body, envelope, policy, resume_after, stop_after, skip in jobs:
        try:
            results.append(_pipeline(policy).run(body, envelope=envelope,
                                                 resume_after=resume_after,
                                                 stop_after=stop_after, skip=skip))
        except ScanError as exc:
            results.append(exc)
        except Exception as exc:  # a bug: the gateway logs it as an application fault
            results.append(RuntimeError(f"{type(exc).__name__}: {exc}"))
    return results


def _ready() -> int:
    _pipeline(None)
    return os.getpid()


# -- the gateway side ---------------------------------------------------------------
class ScanWorkers:
    """A pool of scanner processes for one `ScanSettings` (a reload makes a new pool)."""

    def __init__(self, settings: ScanSettings, *, processes: int = DEFAULT_PROCESSES) -> None:
        self.settings = settings
        self.processes = max(1, processes)
        self._generation = 0
        self._pool: ProcessPoolExecutor | None = None
        self._waiting: list[tuple[Job, asyncio.Future[ScanResult]]] = []

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(self.settings, os.getpid()))
        return self._pool

    async def start(self) -> list[int]:
        """Start the workers now (not at the first message); return their PIDs."""
        loop = asyncio.get_running_loop()
        pool = self._executor()
        answered = await asyncio.gather(*(loop.run_in_executor(pool, _ready)
                                          for _ in range(self.processes)))
        # Every worker was started by those calls, though one may have answered
        # several of them: the pool's own table names them all.
        started = getattr(pool, "_processes", None) or {}
        return sorted(set(answered) | set(started))

    def rules_changed(self) -> None:
        """The gateway reloaded its outbreak rules: the workers reload theirs."""
        self._generation += 1

    async def run(self, body: bytes, *, envelope: Envelope | None = None,
                  policy: str | None = None, resume_after: str | None = None,
                  stop_after: str | None = None, skip: tuple[str, ...] = ()) -> ScanResult:
        """Scan one message in a worker; ScanError if a stage (or the worker) could not decide.

        The scans asked for in one turn of the event loop travel together, a
        share for each worker: one round trip per batch, not per message.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ScanResult] = loop.create_future()
        self._waiting.append(((body, envelope, policy, resume_after, stop_after, tuple(skip)),
                              future))
        if len(self._waiting) == 1:
            loop.call_soon(self._send)
        return await future

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, []
        pool = self._executor()
        share = -(-len(waiting) // self.processes)
        for start in range(0, len(waiting), share):
            part = waiting[start:start + share]
            try:
                done = pool.submit(_scan_many, [job for job, _ in part], self._generation)
            except (BrokenProcessPool, RuntimeError) as exc:
                self._failed(pool, part, exc)
                continue
            asyncio.wrap_future(done).add_done_callback(
                functools.partial(self._settle, part=part, pool=pool))

    def _settle(self, done: asyncio.Future[list[ScanResult | Exception]], *,
                part: list[tuple[Job, asyncio.Future[ScanResult]]],
                pool: ProcessPoolExecutor) -> None:
        if done.cancelled() or done.exception() is not None:
            self._failed(pool, part, done.exception() or RuntimeError("cancelled"))
            return
        for (_, future), outcome in zip(part, done.result(), strict=True):
            if future.done():
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _failed(self, pool: ProcessPoolExecutor, part: list[tuple[Job, asyncio.Future[ScanResult]]],
                exc: BaseException) -> None:
        """A worker died (or the pool was shut down): a temporary failure for these scans."""
        if self._pool is pool:  # the first to hear of it starts a fresh pool
            self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
        for _, future in part:
            if not future.done():
                future.set_exception(ScanError(f"a scanner process died ({exc or 'killed'}); "
                                               f"it is started again"))

    def close(self) -> None:
        """Let the scans in flight finish in the background; start no more."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
