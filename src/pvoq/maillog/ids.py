"""Persistent, never-reused counters for ICID, MID and DCID.

A counter is reserved in blocks: the high-water mark written to disk (by
write, fsync, rename) is always ahead of every number handed out, so a crash
can skip numbers but never reuse one. Numbers wrap at 2**31 like AsyncOS IDs.
"""

from __future__ import annotations

import json
from pathlib import Path

from pvoq.fsutil import atomic_write

_BLOCK = 1000
_WRAP = 2**31


class IdAllocator:
    """Hands out increasing IDs per kind (`icid`, `mid`, `dcid`, ...)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._next: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        if self.path.exists():
            stored = json.loads(self.path.read_text(encoding="utf-8"))
            for kind, mark in stored.items():
                start = int(mark) if 1 <= int(mark) < _WRAP else 1
                self._next[kind] = start
                self._reserved[kind] = start

    def next(self, kind: str) -> int:
        value = self._next.get(kind, 1)
        if value >= self._reserved.get(kind, 0):
            self._reserved[kind] = min(value + _BLOCK, _WRAP)
            atomic_write(self.path, json.dumps(self._reserved, sort_keys=True).encode())
        following = value + 1
        if following >= _WRAP:
            # Wrapped: the next call must write a new, small high-water mark.
            following, self._reserved[kind] = 1, 0
        self._next[kind] = following
        return value
