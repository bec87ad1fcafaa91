"""Durable file operations: the only way pvoq changes a file that matters.

Everything that must survive a crash is written to a temporary file in the
same directory, fsync'd, renamed over its final name, and the directory is
fsync'd so the rename itself is durable. A reader therefore sees the old
content or the new content, never half of it; `*.tmp` files are leftovers of
a crash and are removed on start (see `remove_leftovers`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, sync_dir: bool = True, mode: int = 0o640) -> None:
    """Write *data* to *path* so that a crash leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(path.parent)


def remove_durably(path: Path, *, sync_dir: bool = True) -> None:
    """Unlink *path* (missing is fine) and make the unlink durable."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    if sync_dir:
        fsync_dir(Path(path).parent)


class DirSync:
    """Coalesced directory fsyncs for concurrent writers (a group commit).

    Every writer that renamed a file into the directory awaits `sync()`; it
    returns once an fsync of the directory that *started after* the call has
    finished. While one fsync runs, later callers share the next one, so N
    concurrent messages cost about two directory fsyncs instead of N.
    """

    def __init__(self, directory: Path, *, run: Callable[..., Awaitable[Any]]) -> None:
        self.directory = Path(directory)
        self._run = run  # e.g. a thread-pool runner: the fsync must not block the loop
        self._requested = 0
        self._completed = 0
        self._failed: dict[int, BaseException] = {}  # generation -> the error that hit it
        self._changed: asyncio.Condition | None = None
        self._worker: asyncio.Task[None] | None = None

    async def sync(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Condition()
        self._requested += 1
        wanted = self._requested
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._loop())
        async with self._changed:
            await self._changed.wait_for(lambda: self._completed >= wanted)
        for generation, error in list(self._failed.items()):
            if generation >= wanted:
                raise OSError(f"fsync of {self.directory} failed: {error}") from error

    async def _loop(self) -> None:
        assert self._changed is not None
        while self._completed < self._requested:
            target = self._requested
            try:
                await self._run(fsync_dir, self.directory)
            except Exception as exc:  # every writer of this generation must hear of it
                self._failed = {target: exc}
            else:
                self._failed = {}
            async with self._changed:
                self._completed = target
                self._changed.notify_all()


def remove_leftovers(directory: Path) -> int:
    """Delete the temporary files a crash left in *directory*; return how many."""
    count = 0
    if not Path(directory).is_dir():
        return 0
    for entry in os.scandir(directory):
        if entry.name.endswith(TMP_SUFFIX) and entry.is_file():
            os.unlink(entry.path)
            count += 1
    return count
