"""Group commit for small database writes the manager's CPQ sessions make.

`Batcher` gathers the calls made while a batch is being written and hands
them to a worker thread as the next batch: the writes arriving together share
one transaction (one commit: one WAL fsync on SQLite), and the event loop
serves the other sessions meanwhile instead of waiting on the disk. Each
caller gets its own result, or its own error: the batch function returns one
outcome per item, an exception in the place of an item that failed. If the
batch function itself raises, every caller of that batch gets the error.
A cancelled caller only stops waiting: an item taken into a batch is written
all the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 256


class Batcher(Generic[T, R]):
    """Calls of `submit` made together go to *write* as one list, in a worker thread."""

    def __init__(self, write: Callable[[list[T]], Sequence[R | Exception]],
                 max_batch: int = MAX_BATCH) -> None:
        self.write = write
        self.max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Write *item* with whatever else is waiting; its outcome once written."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch = self._waiting[:self.max_batch]
            del self._waiting[:self.max_batch]
            try:
                outcomes: Sequence[R | Exception] = await loop.run_in_executor(
                    None, self.write, [item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"{len(outcomes)} outcomes for a batch of {len(batch)}")
            except Exception as exc:
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
