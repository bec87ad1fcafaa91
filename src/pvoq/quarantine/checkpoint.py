"""The WAL checkpointer: SQLite's checkpoints off the arrivals' commit path.

In WAL mode SQLite copies the log back into the database (a checkpoint, with
an fsync of the database file) from the commit that finds the log past
`wal_autocheckpoint` pages (1,000): that commit, and every transfer waiting
for it, pays for the copy. `WalCheckpointer` runs passive checkpoints on a
thread and connection of its own, at most every `MIN_INTERVAL_S`, after the
writer's commits: the log is copied back while the next batch is written, so
the commit's own check finds nothing left to copy. Passive: it never waits for
readers or the writer and never blocks them; SQLite's own autocheckpoint stays
on as the backstop. Durability is unchanged: a commit is durable once its WAL
frames are synced (`synchronous=FULL`), whether or not they were copied back.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time

MIN_INTERVAL_S = 0.2
IDLE_CHECK_S = 5.0  # a checkpoint now and then even without a commit (the log of actions)


class WalCheckpointer:
    """Passive checkpoints of the SQLite database at *path*, on a thread of their own."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.checkpoints = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="quarantine-checkpoint")
        self._thread.start()

    def poke(self) -> None:
        """A commit went in: checkpoint soon."""
        self._wake.set()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            while not self._stop:
                self._wake.wait(IDLE_CHECK_S)
                self._wake.clear()
                if self._stop:
                    break
                with contextlib.suppress(sqlite3.Error):  # busy or locked: next time
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                time.sleep(MIN_INTERVAL_S)
        finally:
            conn.close()
