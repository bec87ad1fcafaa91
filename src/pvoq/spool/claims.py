"""Poison-message protection: count how often processing a message crashed.

Before the pipeline works on a batch of messages, their MIDs are written
(write-fsync-rename) to `claims.json` with a count; a clean pass leaves the
file behind harmlessly (those messages are no longer INCOMING). After a
crash, the recovery finds the count of each claimed message raised: a
message claimed `MAX_ATTEMPTS` times without ever finishing crashed the
process that often, and moves to `bad/` instead of crashing it again
(Mailman's switchboard does the same). Suspects are then processed one at a
time, so an innocent neighbour of a poison message is not blamed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pvoq.fsutil import atomic_write, fsync_dir

MAX_ATTEMPTS = 3


class Claims:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.counts: dict[int, int] = {}
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self.counts = {int(k): int(v) for k, v in raw.items()}
            except (ValueError, AttributeError):
                self.counts = {}

    def suspects(self) -> set[int]:
        """MIDs that were being processed when the process last died."""
        return set(self.counts)

    def claim(self, mids: list[int]) -> None:
        """Record, durably, that *mids* are about to be processed.

        The file holds this batch with its counts, plus the suspects of the last
        crash still waiting their turn: a second crash before they are processed
        must not forget how often they already crashed the gateway.
        """
        for mid in mids:
            self.counts[mid] = self.counts.get(mid, 0) + 1
        atomic_write(self.path, json.dumps(self.counts).encode())

    def keep_only(self, mids: set[int]) -> None:
        """Forget the counts of messages that are no longer waiting to be processed."""
        self.counts = {mid: n for mid, n in self.counts.items() if mid in mids}

    def attempts(self, mid: int) -> int:
        return self.counts.get(mid, 0)

    def done(self, mids: list[int]) -> None:
        """*mids* were processed (or handed back for a later retry): forget their counts.

        Only memory changes; the next claim rewrites the file.
        """
        for mid in mids:
            self.counts.pop(mid, None)


def move_to_bad(spool_dir: Path, mid: int) -> Path:
    """Move a message's files out of the spool into `bad/` (kept for an operator)."""
    bad = Path(spool_dir) / "bad"
    bad.mkdir(exist_ok=True)
    # The body first: a crash between the two moves leaves the entry in the
    # spool with its body already in bad/, never an entry without a body.
    for suffix in (".eml", ".json"):
        src = Path(spool_dir) / f"{mid}{suffix}"
        if src.exists():
            os.replace(src, bad / src.name)
    fsync_dir(bad)
    fsync_dir(Path(spool_dir))
    return bad
