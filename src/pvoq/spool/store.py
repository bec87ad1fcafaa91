"""The durable spool: one message = a body file and an entry file.

On-disk format, in `<data>/spool/`:

- `<MID>.eml` — the message exactly as received (CRLF line ends), written
  first and fsync'd;
- `<MID>.json` — the entry: envelope, per-recipient delivery state, metadata.
  Written by write-fsync-rename; **its appearance is the commit**. A body
  without an entry is a leftover of a crash before the commit and is removed
  on start; `*.tmp` files likewise.

A state change rewrites the entry atomically. When every recipient has
reached a final state, the entry is removed first, then the body.
Nothing here is pickled: entries are JSON so an operator can read them.

This module never talks to the network and never decides where mail goes.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pvoq.fsutil import DirSync, atomic_write, fsync_dir, remove_durably, remove_leftovers

PENDING = "pending"
DELIVERED = "delivered"
BOUNCED = "bounced"
DELETED = "deleted"
FINAL_STATES = frozenset({DELIVERED, BOUNCED, DELETED})

INCOMING = "incoming"  # accepted, not yet through the pipeline
QUEUED = "queued"      # routed: each recipient has a destination host


@dataclass
class Recipient:
    rid: int
    address: str
    host: str | None = None
    status: str = PENDING
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str = ""

    @property
    def pending(self) -> bool:
        return self.status == PENDING


@dataclass
class Entry:
    mid: int
    sender: str
    recipients: list[Recipient]
    received: float
    size: int
    icid: int = 0
    state: str = INCOMING
    peer: str = ""
    transfer_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        # Built by hand: dataclasses.asdict deep-copies, and this is on every message's path.
        raw = {f: getattr(self, f) for f in _ENTRY_FIELDS}
        raw["recipients"] = [r.__dict__ for r in self.recipients]
        return json.dumps(raw, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Entry:  # noqa: D102
        raw = json.loads(data)
        raw["recipients"] = [Recipient(**r) for r in raw["recipients"]]
        return cls(**raw)

    def pending_for(self, host: str) -> list[Recipient]:
        return [r for r in self.recipients if r.pending and r.host == host]

    @property
    def finished(self) -> bool:
        return all(r.status in FINAL_STATES for r in self.recipients)


_ENTRY_FIELDS = tuple(f.name for f in fields(Entry))


class Spool:
    """Messages on disk, by MID.

    The `*_async` methods do the same durable writes on a thread pool, with
    the directory fsyncs of concurrent writers coalesced (`DirSync`): the
    event loop keeps serving other sessions while the disk works, and the
    filesystem commits many messages in one journal transaction.
    """

    def __init__(self, directory: Path, *, writers: int = 16) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="spool")
        self._dirsync = DirSync(self.dir, run=self._in_pool)

    async def _in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def put_async(self, entry: Entry, body: bytes) -> None:
        """`put`, off the event loop; returns once the message survives a crash."""
        data = entry.to_json()
        await self._in_pool(self._write_new, entry.mid, body, data)
        await self._dirsync.sync()

    async def update_async(self, entry: Entry) -> None:
        await self._in_pool(self._write_entry, entry.mid, entry.to_json())
        await self._dirsync.sync()

    def _write_entry(self, mid: int, data: bytes) -> None:
        atomic_write(self.entry_path(mid), data, sync_dir=False)

    async def remove_async(self, mid: int) -> None:
        await self._in_pool(self._remove_files, mid)
        await self._dirsync.sync()

    def _remove_files(self, mid: int) -> None:
        remove_durably(self.entry_path(mid), sync_dir=False)
        remove_durably(self.body_path(mid), sync_dir=False)

    def _write_new(self, mid: int, body: bytes, data: bytes) -> None:
        atomic_write(self.body_path(mid), body, sync_dir=False)
        atomic_write(self.entry_path(mid), data, sync_dir=False)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def body_path(self, mid: int) -> Path:
        return self.dir / f"{mid}.eml"

    def entry_path(self, mid: int) -> Path:
        return self.dir / f"{mid}.json"

    def put(self, entry: Entry, body: bytes) -> None:
        """Store a new message durably; return only once it survives a crash."""
        self._write_new(entry.mid, body, entry.to_json())  # the entry is the commit
        fsync_dir(self.dir)

    def update(self, entry: Entry) -> None:
        atomic_write(self.entry_path(entry.mid), entry.to_json())

    def read_body(self, mid: int) -> bytes:
        return self.body_path(mid).read_bytes()

    def remove(self, mid: int) -> None:
        self._remove_files(mid)
        fsync_dir(self.dir)

    def recover(self) -> list[Entry]:
        """Load every committed entry, and clear what a crash left half-done."""
        remove_leftovers(self.dir)
        entries: list[Entry] = []
        committed: set[str] = set()
        for item in sorted(os.scandir(self.dir), key=lambda e: e.name):
            if item.name.endswith(".json"):
                entries.append(Entry.from_json(Path(item.path).read_bytes()))
                committed.add(item.name[:-5])
        for item in os.scandir(self.dir):
            if item.name.endswith(".eml") and item.name[:-4] not in committed:
                os.unlink(item.path)  # body of a transaction that never got its 250
        entries.sort(key=lambda e: (e.received, e.mid))
        return entries
