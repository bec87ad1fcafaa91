"""MIDs that are unique across every manager sharing one quarantine database.

A manager's MIDs are the `messages` rows' ids. One manager numbers them from
its own `ids.json`; two managers on one PostgreSQL database would then hand
out the same numbers and refuse each other's mail. `SharedIds` draws the MIDs
from the database instead, a block at a time: the `held_counts` row `*mid`
holds the start of the next free block, and taking a block is one
`UPDATE ... RETURNING` (a row lock on PostgreSQL), so no two processes ever
get the same block. Like the local counter, a restart skips the rest of its
block (at most `BLOCK` numbers); numbers are never reused. Other kinds
(ICID, DCID) stay per process.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from pvoq.maillog import IdAllocator
from pvoq.quarantine.schema import held_counts, messages
from pvoq.quarantine.upsert import insert_for

MID_COUNTER = "*mid"
"""The `held_counts` row holding the first MID of the next free block."""
BLOCK = 1000


class SharedIds(IdAllocator):
    """An `IdAllocator` whose `mid`s come from blocks reserved in the quarantine database."""

    def __init__(self, path: Path, engine: Engine, *, block: int = BLOCK) -> None:
        super().__init__(path)
        self.engine = engine
        self.block = block
        self._mid = 0
        self._mid_end = 0  # the current block is [_mid, _mid_end)

    def next(self, kind: str) -> int:
        if kind != "mid":
            return super().next(kind)
        if self._mid >= self._mid_end:
            self._mid, self._mid_end = self.reserve()
        value = self._mid
        self._mid += 1
        return value

    def reserve(self) -> tuple[int, int]:
        """Take the next free block of MIDs for this process: (first, end)."""
        counter = held_counts.c
        take = (update(held_counts).where(counter.quarantine == MID_COUNTER)
                .values(n=counter.n + self.block).returning(counter.n))
        with self.engine.begin() as conn:
            end = conn.execute(take).scalar()
            if end is None:
                # The first block on this database: past every stored message, and past
                # what this process handed out from its own counter before.
                stored = conn.execute(select(func.max(messages.c.id))).scalar() or 0
                first = max(int(stored) + 1, super().next("mid"))
                insert = insert_for(self.engine.dialect.name)
                conn.execute(insert(held_counts).values(quarantine=MID_COUNTER, n=first)
                             .on_conflict_do_nothing())
                end = conn.execute(take).scalar()
        assert end is not None
        return int(end) - self.block, int(end)
