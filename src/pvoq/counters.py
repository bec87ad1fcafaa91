"""Counters with AsyncOS's three columns: since reset, since start (uptime), lifetime.

`status` and `hoststatus` show them. Lifetime and reset baselines survive a
restart (`counters.json`, written by write-fsync-rename every few seconds and
at stop); a crash can lose the last few seconds of counting, never mail.
"""

from __future__ import annotations

import json
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
        if path is not None and path.exists():
            stored = json.loads(path.read_text())
            self.lifetime.update(stored.get("lifetime", {}))
            self.at_reset.update(stored.get("at_reset", {}))
            self.reset_time = float(stored.get("reset_time", self.reset_time))

    def inc(self, name: str, n: int = 1) -> None:
        self.uptime[name] += n
        self.lifetime[name] += n
        if self.path is not None and time.monotonic() - self._saved > SAVE_EVERY_S:
            self.save()

    def row(self, name: str) -> tuple[int, int, int]:
        """(since reset, uptime, lifetime)."""
        lifetime = self.lifetime[name]
        return lifetime - self.at_reset[name], self.uptime[name], lifetime

    def reset(self) -> None:
        self.at_reset = defaultdict(int, self.lifetime)
        self.reset_time = time.time()
        self.save()

    def save(self) -> None:
        self._saved = time.monotonic()
        if self.path is None:
            return
        atomic_write(self.path, json.dumps({"lifetime": self.lifetime, "at_reset": self.at_reset,
                                            "reset_time": self.reset_time}).encode())
