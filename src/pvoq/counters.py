"""Counters with AsyncOS's three columns: since reset, since start (uptime), lifetime.

`status` and `hoststatus` show them. Lifetime and reset baselines survive a
restart (`counters.json`, written by write-fsync-rename every few seconds by a
thread of its own, so that the event loop never waits for the disk, and at
stop); a crash can lose the last few seconds of counting, never mail.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import defaultdict
from pathlib import Path

from pvoq.fsutil import atomic_write

SAVE_EVERY_S = 5.0


class Counters:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.uptime: defaultdict[str, int] = defaultdict(int)
        self.lifetime: defaultdict[str, int] = defaultdict(int)
        self.at_reset: defaultdict[str, int] = defaultdict(int)  # lifetime value at reset
        self.reset_time = time.time()
        self._saved = 0.0
        self._write_lock = threading.Lock()
        self._due = threading.Event()
        self._saver: threading.Thread | None = None
        if path is not None and path.exists():
            stored = json.loads(path.read_text())
            self.lifetime.update(stored.get("lifetime", {}))
            self.at_reset.update(stored.get("at_reset", {}))
            self.reset_time = float(stored.get("reset_time", self.reset_time))

    def inc(self, name: str, n: int = 1) -> None:
        self.uptime[name] += n
        self.lifetime[name] += n
        if self.path is not None and time.monotonic() - self._saved > SAVE_EVERY_S:
            self._saved = time.monotonic()
            self._save_soon()

    def row(self, name: str) -> tuple[int, int, int]:
        """(since reset, uptime, lifetime)."""
        lifetime = self.lifetime[name]
        return lifetime - self.at_reset[name], self.uptime[name], lifetime

    def reset(self) -> None:
        self.at_reset = defaultdict(int, self.lifetime)
        self.reset_time = time.time()
        self.save()

    def save(self) -> None:
        """Write the counters now (at stop and reset; `inc` has them written in the
        background)."""
        self._saved = time.monotonic()
        if self.path is None:
            return
        data = json.dumps({"lifetime": dict(self.lifetime), "at_reset": dict(self.at_reset),
                           "reset_time": self.reset_time}).encode()
        with self._write_lock:
            atomic_write(self.path, data)

    def _save_soon(self) -> None:
        if self._saver is None:
            self._saver = threading.Thread(target=self._save_loop, name="counters",
                                           daemon=True)
            self._saver.start()
        self._due.set()

    def _save_loop(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            # a full disk: the next save tries again; the counts are in memory
            with contextlib.suppress(OSError):
                self.save()
