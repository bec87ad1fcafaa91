"""The manager's log subscription: pull each gateway's mail_logs over SSH, keep and index it.

Every `<log_subscription><interval_seconds>` (sooner while a gateway has
more to send) the manager asks each gateway it reaches over SSH (added with
`gateway add`) for the lines after its position (`logs chunk INODE OFFSET
HEAD BYTES LINES`, at most `chunk_bytes` and `chunk_lines` a pull), appends
them to its copy `<data_dir>/gateway_logs/<gateway>/mail_logs` (0640, in a
0750 directory), fsyncs it, then indexes them and moves the position in one
transaction (`index.TrackingIndex.add`). At start, a copy longer than what
the index covers (a crash between the two) is cut back to it, so those lines
are pulled again: no line is lost or kept twice across a restart. The
manager's own mail_logs is read and indexed the same way, from its file.

A pull that fails (the gateway unreachable, an SSH error, a malformed
answer) is recorded for `logsub.status`, logged once as an AsyncOS
application fault (again when the cause changes), and retried at the next
interval; the first pull that succeeds logs the fault cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pvoq.config.model import Config, LogSubscriptionSettings
from pvoq.fsutil import FILE_MODE, make_dir
from pvoq.logsub.index import GATEWAY, MANAGER, Source, TrackingIndex
from pvoq.logsub.reader import Chunk, Position, read_chunk
from pvoq.logsub.retention import (
    PRUNE_EVERY_S,
    cutoff,
    delete_old_copies,
    recover_rolled,
    roll_copy,
)
from pvoq.logsub.wire import decode_chunk
from pvoq.maillog import MailLog
from pvoq.maillog.writer import format_time
from pvoq.remote.client import SshClient
from pvoq.remote.keys import SshFault

COPY_NAME = "mail_logs"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,252}")
_OWN_CHUNKS_PER_ROUND = 20


def fault_line(name: str, cause: str) -> str:
    """The mail_logs text of a failed pull (logged at level Critical)."""
    detail = f"log subscription of {name} failed: {cause}".replace("'", '"')
    return f"An application fault occurred: ('{detail}')"


def chunk_command(position: Position, settings: LogSubscriptionSettings) -> str:
    """The SSH command line that asks a gateway for the lines after *position*."""
    return (f"logs chunk {position.inode} {position.offset} {position.head or '-'} "
            f"{settings.chunk_bytes} {settings.chunk_lines}")


@dataclass
class Health:
    """What `logsub.status` says of one source beyond the index."""

    last_error: str | None = None
    last_error_time: float | None = None
    failing: bool = False
    fault_logged: bool = False  # a fault line was written: its clearing is logged too


class LogSubscription:
    """Pulls, keeps and indexes the gateways' mail_logs, and indexes the manager's own.

    *config* gives the running configuration (settings and gateways change on
    a reload); *ssh* is the manager's SSH client (its pins say which gateways
    can be reached).
    """

    def __init__(self, *, config: Callable[[], Config], ssh: SshClient, maillog: MailLog,
                 index: TrackingIndex | None = None) -> None:
        self.config = config
        cfg = config()
        self.data_dir = cfg.data_dir
        self.ssh = ssh
        self.log = maillog
        self.index = index or TrackingIndex(cfg.data_dir / "tracking.db")
        self.copies = self.data_dir / "gateway_logs"
        self.health: dict[str, Health] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._round = asyncio.Lock()
        self._rounds = 0
        self._next_prune = 0.0   # monotonic: the first round prunes

    # -- the kept copies ------------------------------------------------------------
    def copy_path(self, name: str) -> Path:
        key = name.lower()
        if not _NAME.fullmatch(key) or key in (".", ".."):
            raise ValueError(f"gateway name {name!r} cannot name a directory")
        return self.copies / key / COPY_NAME

    def recover(self) -> None:
        """Cut every kept copy back to what the index covers (a pull a crash interrupted
        between its write and its commit is pulled again)."""
        for source in self.index.sources():
            if source.kind != GATEWAY:
                continue
            path = self.copy_path(source.name)
            rolled = recover_rolled(path, source.stored)
            if rolled is not None:
                self.index.restart_copy(source)
                self.log.info(f"Log subscription of {source.name}: rollover of its kept copy "
                              f"to {rolled.name} completed")
                continue
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size > source.stored:
                os.truncate(path, source.stored)
                self.log.info(f"Log subscription of {source.name}: {size - source.stored} "
                              f"bytes of {path} not yet indexed removed; they are pulled again")
            elif size < source.stored:
                self.log.warning(f"Log subscription of {source.name}: {path} holds {size} "
                                 f"bytes, {source.stored} were indexed: its copy lost lines")

    # -- which gateways ---------------------------------------------------------------
    def gateways(self) -> dict[str, str]:
        """Each gateway the manager serves or reaches over SSH: name -> host."""
        found: dict[str, str] = {}
        for record in self.config().pvo.gateways:
            found[record.hostname.lower()] = record.address
        for name, pin in self.ssh.pins.all().items():
            found[name] = pin.host
        return dict(sorted(found.items()))

    # -- the loop -------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        async with self._round:   # a round under way in a thread finishes first
            self.index.close()

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            settings = self.config().log_subscription
            more = False
            if settings.enabled:
                try:
                    more = await self.pull_all()
                    if time.monotonic() >= self._next_prune:
                        self._next_prune = time.monotonic() + PRUNE_EVERY_S
                        async with self._round:
                            await asyncio.to_thread(self.prune, time.time())
                except Exception as exc:  # a bug or a full disk must not end the subscription
                    self.log.critical(fault_line("the manager", f"{type(exc).__name__}: {exc}"))
            self._wake.clear()
            if more:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), settings.interval_seconds)

    async def pull_all(self) -> bool:
        """One round: every gateway once, then the manager's own log; True if any has more."""
        async with self._round:
            names = self.gateways()
            results = await asyncio.gather(*(self.pull(n) for n in names))
            own = await self.pull_own()
            self._rounds += 1
            return any(results) or own

    async def pull(self, name: str) -> bool:
        """Pull one chunk from gateway *name*; True if it has more to send."""
        settings = self.config().log_subscription
        if self.ssh.pins.get(name) is None:
            self._failed(name, "not reachable over SSH: add it with `pvoq cli gateway add`",
                         log=False)
            return False
        # the index's lock may be held by a pull being indexed: never wait for it on the loop
        source = await asyncio.to_thread(self.index.source, name, GATEWAY)
        try:
            answer = await self.ssh.run(name, chunk_command(source.position, settings))
            chunk = decode_chunk(answer, max_bytes=settings.chunk_bytes,
                                 max_lines=settings.chunk_lines)
        except SshFault as exc:
            self._failed(name, str(exc))
            return False
        except ValueError as exc:
            self._failed(name, f"malformed answer to 'logs chunk': {exc}")
            return False
        if chunk.gap:
            self.log.warning(f"Log subscription of {name}: {chunk.gap}")
        await asyncio.to_thread(self._keep, source, chunk, time.time())
        self._succeeded(name)
        return chunk.more

    def _keep(self, source: Source, chunk: Chunk, now: float) -> None:
        """Append *chunk* to the copy (fsync'd), then index it and move the position."""
        path = self.copy_path(source.name)
        make_dir(path.parent)
        if source.stored >= self.config().log_subscription.max_file_size:
            source = self._roll(source, path, now)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
        try:
            if os.fstat(fd).st_size > source.stored:
                os.ftruncate(fd, source.stored)   # lines a failed pull left: not indexed
            os.lseek(fd, 0, os.SEEK_END)
            for segment in chunk.segments:
                view = memoryview(segment.data)
                while view:
                    view = view[os.write(fd, view):]
            if chunk.segments:
                os.fsync(fd)
            stored = os.fstat(fd).st_size
        finally:
            os.close(fd)
        self.index.add(source, _lines(chunk), position=chunk.position, stored=stored,
                       pulled_at=now)

    def _roll(self, source: Source, path: Path, now: float) -> Source:
        """Roll the kept copy of *source* over (its unindexed tail cut first, so that the
        rolled file holds exactly what the index covers); the new copy starts empty."""
        if path.stat().st_size > source.stored:
            os.truncate(path, source.stored)
        rolled = roll_copy(path, now)
        self.index.restart_copy(source)
        self.log.info(f"Log subscription of {source.name}: kept copy rolled over to "
                      f"{rolled.name}")
        return replace(source, stored=0)

    def prune(self, now: float) -> None:
        """Forget what is older than `retention_days`: the index's messages and connection
        lines, and the gateways' rolled copies (a worker thread's work)."""
        before = cutoff(self.config().log_subscription.retention_days, now)
        if before is None:
            return
        pruned = self.index.prune(before)
        deleted = []
        for source in self.index.sources():
            if source.kind == GATEWAY:
                deleted += delete_old_copies(self.copy_path(source.name), before)
        if pruned.messages or pruned.conns or deleted:
            self.log.info(f"Log subscription: tracking data before {format_time(before)} "
                          f"removed: {pruned.messages} messages, {pruned.conns} connection "
                          f"lines, {len(deleted)} rolled copies")

    async def pull_own(self) -> bool:
        """Index what the manager's own mail_logs holds after its position."""
        self.log.flush()
        settings = self.config().log_subscription
        cfg = self.config()
        source = await asyncio.to_thread(self.index.source, cfg.hostname, MANAGER)
        for _ in range(_OWN_CHUNKS_PER_ROUND):
            chunk = await asyncio.to_thread(
                read_chunk, cfg.logs_dir, source.position, max_bytes=settings.chunk_bytes,
                max_lines=settings.chunk_lines)
            if chunk.gap:
                self.log.warning(f"Log subscription of {cfg.hostname}: {chunk.gap}")
            await asyncio.to_thread(self.index.add, source, _lines(chunk),
                                    position=chunk.position, stored=0, pulled_at=time.time())
            if not chunk.more:
                return False
            source = await asyncio.to_thread(self.index.source, cfg.hostname, MANAGER)
        return True

    # -- health -----------------------------------------------------------------------
    def _failed(self, name: str, cause: str, *, log: bool = True) -> None:
        health = self.health.setdefault(name, Health())
        if log and (not health.failing or health.last_error != cause):
            self.log.critical(fault_line(name, cause))
            health.fault_logged = True
        health.last_error, health.last_error_time, health.failing = cause, time.time(), True

    def _succeeded(self, name: str) -> None:
        health = self.health.setdefault(name, Health())
        if health.failing and health.fault_logged:
            self.log.info(f"Log subscription of {name}: pull succeeded, application fault "
                          "cleared")
        health.failing = health.fault_logged = False

    def status(self) -> dict[str, Any]:
        """What `logsub.status` answers (it reads the index: call it from a worker thread)."""
        sources = {s.name: s for s in self.index.sources()}
        settings = self.config().log_subscription

        def row(name: str, host: str, source: Source | None) -> dict[str, Any]:
            health = self.health.get(name, Health())
            return {"name": name, "host": host,
                    "last_pull": source.last_pull if source else None,
                    "last_line_time": source.last_line_time if source else None,
                    "lines": source.lines if source else 0,
                    "last_error": health.last_error, "last_error_time": health.last_error_time,
                    "failing": health.failing,
                    "copy": str(self.copy_path(name)),
                    "position": None if source is None else
                    {"inode": source.position.inode, "offset": source.position.offset}}

        gateways = [row(n, h, sources.get(n)) for n, h in self.gateways().items()]
        own_name = self.config().hostname.lower()
        own = sources.get(own_name)
        return {"enabled": settings.enabled, "interval_seconds": settings.interval_seconds,
                "chunk_bytes": settings.chunk_bytes, "chunk_lines": settings.chunk_lines,
                "retention_days": settings.retention_days,
                "max_file_size": settings.max_file_size,
                "gateways": gateways,
                "manager": {"name": own_name, "lines": own.lines if own else 0,
                            "last_line_time": own.last_line_time if own else None}}


def _lines(chunk: Chunk) -> list[str]:
    out: list[str] = []
    for segment in chunk.segments:
        out.extend(segment.data.decode("utf-8", errors="replace").split("\n")[:-1])
    return out
