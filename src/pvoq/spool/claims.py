"""Poison-message protection: count how often processing a message crashed.

Before the pipeline works on a batch of messages, their MIDs are recorded
durably with a count (the spool's `claims` state, committed with the spool's
other changes); a clean pass leaves the record behind harmlessly (those
messages are no longer INCOMING). After a crash, the recovery finds the count
of each claimed message raised: a message claimed `MAX_ATTEMPTS` times without
ever finishing crashed the process that often, and moves to `bad/` instead of
crashing it again (Mailman's switchboard does the same). Suspects are then
processed one at a time, so an innocent neighbour of a poison message is not
blamed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pvoq.spool.store import Spool

MAX_ATTEMPTS = 3
STATE_NAME = "claims"


class Claims:
    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.counts: dict[int, int] = {}
        raw = spool.state(STATE_NAME)
        if raw is not None:
            try:
                self.counts = {int(k): int(v) for k, v in json.loads(raw).items()}
            except (ValueError, AttributeError):
                self.counts = {}

    def suspects(self) -> set[int]:
        """MIDs that were being processed when the process last died."""
        return set(self.counts)

    def claim(self, mids: list[int]) -> None:
        """Record, durably, that *mids* are about to be processed.

        The record holds this batch with its counts, plus the suspects of the
        last crash still waiting their turn: a second crash before they are
        processed must not forget how often they already crashed the gateway.
        """
        self.spool.put_state(STATE_NAME, self._counted(mids))

    async def claim_async(self, mids: list[int]) -> None:
        """`claim`, without blocking the event loop."""
        await self.spool.put_state_async(STATE_NAME, self._counted(mids))

    def _counted(self, mids: list[int]) -> bytes:
        for mid in mids:
            self.counts[mid] = self.counts.get(mid, 0) + 1
        return json.dumps(self.counts).encode()

    def keep_only(self, mids: set[int]) -> None:
        """Forget the counts of messages that are no longer waiting to be processed."""
        self.counts = {mid: n for mid, n in self.counts.items() if mid in mids}

    def attempts(self, mid: int) -> int:
        return self.counts.get(mid, 0)

    def done(self, mids: list[int]) -> None:
        """*mids* were processed (or handed back for a later retry): forget their counts.

        Only memory changes; the next claim rewrites the record.
        """
        for mid in mids:
            self.counts.pop(mid, None)
