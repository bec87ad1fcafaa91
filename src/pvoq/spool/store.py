"""The durable spool: every message's entry and body, in an append-only log.

A message is an *entry* (envelope, per-recipient delivery state, metadata;
JSON, so an operator can read it with `pvoq spool show`) and a *body* (the
message exactly as received, CRLF line ends). Both are written by one PUT
record of the spool log (`spool.log`): **the message exists once that record
is durable**, and only then does the SMTP client get its 250. A state change
appends a new version of the entry; when every recipient has reached a final
state the message is removed. `recover` returns every message still there.

This module never talks to the network and never decides where mail goes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from pvoq.fsutil import atomic_write, make_dir, remove_leftovers
from pvoq.spool.log import (
    ENTRY,
    PUT,
    REMOVE,
    SEGMENT_BYTES,
    STATE,
    BodyFile,
    Record,
    SpoolLog,
)


class RecipientStatus(StrEnum):
    """Where one recipient's delivery stands (`Recipient.status`)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    DELETED = "deleted"


class EntryState(StrEnum):
    """Where a message stands on its way through the appliance (`Entry.state`)."""

    INCOMING = "incoming"  # accepted, not yet through the pipeline
    QUEUED = "queued"      # routed: each recipient has a destination host


PENDING = RecipientStatus.PENDING
DELIVERED = RecipientStatus.DELIVERED
BOUNCED = RecipientStatus.BOUNCED
DELETED = RecipientStatus.DELETED
FINAL_STATES = frozenset({DELIVERED, BOUNCED, DELETED})

INCOMING = EntryState.INCOMING
QUEUED = EntryState.QUEUED


class ReleasedMeta(TypedDict):
    """`EntryMeta.released`: a message the manager released back to this gateway."""

    origin_mid: int             # its MID on this gateway when it was quarantined
    manager_mid: int            # its MID on the manager
    resume_after: str | None    # the scan stage after which its scan resumes
    transfer_id: NotRequired[str]       # the release's transfer id (its receipts name it)
    manager: NotRequired[str]           # the manager it came from (its receipts go there)
    copy_of: NotRequired[int | None]    # a Send Copy: the manager MID of the held message


class EntryMeta(TypedDict, total=False):
    """What an entry carries besides its envelope (`Entry.meta`, JSON in the spool)."""

    subject: str                           # the Subject header, for logs and listings
    sender_group: str                      # the HAT sender group it was accepted under
    cpq: dict[str, Any]                    # the CPQ metadata it travels with (cpq.transfer)
    gateway: str                           # manager: the gateway a release goes back to
    policy: str                            # the mail policy this part of a split message follows
    split_from: int                        # the MID this per-policy part was split from
    resume_after: str                      # the scan stage after which this part's scan resumes
    prior_verdicts: list[dict[str, Any]]   # verdicts on the message before it was split
    skip: list[str]                        # the scan stages this part skips (skip-filters)
    plans: dict[str, dict[str, int]]       # MIDs chosen for the messages this one gives rise to
    released: ReleasedMeta                 # a release from the manager, and where it resumes
    local_release: ReleasedMeta            # gateway: a release from its local quarantines
    duplicate_of: int                      # the MID this duplicate-quarantine copy was made of
    dsn_for: int                           # the MID this delivery status notification is about
    notice_for: int                        # the MID this outbreak rescan notice is about
    receipt_for: int                       # the MID this release receipt is about
    manager: str                           # gateway: the manager a release receipt goes to


@dataclass
class Recipient:
    rid: int
    address: str
    host: str | None = None
    status: RecipientStatus = PENDING
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
    state: EntryState = INCOMING
    peer: str = ""
    transfer_id: str | None = None
    meta: EntryMeta = field(default_factory=lambda: EntryMeta())

    def to_json(self) -> bytes:
        # Built by hand: dataclasses.asdict deep-copies, and this is on every message's path.
        raw = {f: getattr(self, f) for f in _ENTRY_FIELDS}
        raw["recipients"] = [r.__dict__ for r in self.recipients]
        return _ENCODE(raw).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Entry:
        raw = json.loads(data)
        for r in raw["recipients"]:
            if "status" in r:
                r["status"] = RecipientStatus(r["status"])
        raw["recipients"] = [Recipient(**r) for r in raw["recipients"]]
        if "state" in raw:
            raw["state"] = EntryState(raw["state"])
        return cls(**raw)

    def pending_for(self, host: str) -> list[Recipient]:
        return [r for r in self.recipients if r.pending and r.host == host]

    @property
    def finished(self) -> bool:
        return all(r.status in FINAL_STATES for r in self.recipients)


_ENTRY_FIELDS = tuple(f.name for f in fields(Entry))
# `json.dumps` with separators builds a new encoder at every call: one, made once.
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


class Spool:
    """Messages on disk, by MID, in the spool log (`spool.log.SpoolLog`).

    The `*_async` methods return once the change is durable without blocking
    the event loop; changes of concurrent sessions share one disk flush. The
    plain methods block their caller until the same is true.
    """

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES,
                 readonly: bool = False) -> None:
        self.dir = make_dir(Path(directory))
        self.log = SpoolLog(self.dir, segment_bytes=segment_bytes, readonly=readonly)
        if not readonly:
            self._import_files()

    def _import_files(self) -> None:
        """Take in the `<MID>.json` + `<MID>.eml` pairs of a spool written by pvoq 0.1.

        Each pair becomes a PUT record; its files go once the record is durable.
        A body without its entry was never acknowledged and is dropped.
        """
        remove_leftovers(self.dir)
        for path in sorted(self.dir.glob("*.json")):
            body = path.with_suffix(".eml")
            if path.stem.isdigit() and body.exists():
                entry = Entry.from_json(path.read_bytes())
                self.put(entry, body.read_bytes())
                path.unlink()
                body.unlink()
        for body in self.dir.glob("*.eml"):
            if body.stem.isdigit():
                body.unlink()

    @property
    def damaged(self) -> list[str]:
        """What replaying the log had to cut at start (for the caller to log)."""
        return self.log.damaged

    # -- changes ----------------------------------------------------------------
    def put(self, entry: Entry, body: bytes) -> None:
        """Store a message durably; return only once it survives a crash."""
        self.log.commit([Record(PUT, entry.mid, entry.to_json(), body)])

    async def put_async(self, entry: Entry, body: bytes, *,
                        then: Callable[[], None] | None = None) -> None:
        """`put` without blocking the event loop; *then* runs once it is durable (see
        `SpoolLog.commit_async`)."""
        await self.log.commit_async([Record(PUT, entry.mid, entry.to_json(), body)], then=then)

    def put_soon(self, entry: Entry, body: bytes, *, then: Callable[[], None],
                 on_error: Callable[[BaseException], None]) -> None:
        """`put` handed to the writer at once, in order with the changes handed in after it
        (durable whenever they are); *then* runs once it is durable (`commit_soon`)."""
        self.log.commit_soon([Record(PUT, entry.mid, entry.to_json(), body)],
                             on_error=on_error, then=then)

    def update(self, entry: Entry) -> None:
        """Record *entry*'s new state durably (its body is unchanged)."""
        self.log.commit([Record(ENTRY, entry.mid, entry.to_json())])

    async def update_async(self, entry: Entry) -> None:
        await self.log.commit_async([Record(ENTRY, entry.mid, entry.to_json())])

    def remove(self, mid: int) -> None:
        self.log.commit([Record(REMOVE, mid)])

    def flush(self) -> None:
        """Wait until every change handed in so far (`remove_soon`, `update_soon`) is durable."""
        self.log.commit([])

    def remove_soon(self, mid: int, on_error: Callable[[BaseException], None]) -> None:
        """Remove a message whose work is done without waiting for the disk: a crash
        before the removal is durable only repeats that work (`SpoolLog.commit_soon`)."""
        self.log.commit_soon([Record(REMOVE, mid)], on_error=on_error)

    def update_soon(self, entry: Entry, on_error: Callable[[BaseException], None]) -> None:
        """`update` without waiting for the disk, for a state whose loss only repeats
        work (a delivery attempt's outcome)."""
        self.log.commit_soon([Record(ENTRY, entry.mid, entry.to_json())], on_error=on_error)

    async def remove_async(self, mid: int) -> None:
        await self.log.commit_async([Record(REMOVE, mid)])

    def put_state(self, name: str, value: bytes) -> None:
        """Keep a small named value of the appliance durably (the last one wins)."""
        self.log.commit([_state(name, value)])

    async def put_state_async(self, name: str, value: bytes) -> None:
        await self.log.commit_async([_state(name, value)])

    def state(self, name: str) -> bytes | None:
        return self.log.state(name)

    def close(self) -> None:
        self.log.close()

    # -- reading ----------------------------------------------------------------
    def __contains__(self, mid: int) -> bool:
        return mid in self.log

    def mids(self) -> list[int]:
        return self.log.mids()

    def get(self, mid: int) -> Entry | None:
        """The last committed version of *mid*'s entry, or None."""
        data = self.log.entry(mid)
        return None if data is None else Entry.from_json(data)

    def read_body(self, mid: int) -> bytes:
        return self.log.body(mid)

    def open_body(self, mid: int) -> BodyFile:
        """*mid*'s body, to be read a piece at a time (`spool.log.BodyFile`; close it)."""
        return self.log.open_body(mid)

    def recover(self) -> list[Entry]:
        """Every message in the spool, oldest first (then by MID)."""
        entries = [Entry.from_json(data) for _mid, data in self.log.entries()]
        entries.sort(key=lambda e: (e.received, e.mid))
        return entries

    def move_to_bad(self, mid: int) -> Path:
        """Take a message out of the spool into `bad/<MID>.eml|.json`, kept for an operator.

        The files are written (and fsync'd) before the message leaves the log:
        a crash in between leaves it in both places, never in neither.
        """
        bad = make_dir(self.dir / "bad")
        data = self.log.entry(mid)
        if data is not None:
            atomic_write(bad / f"{mid}.eml", self.read_body(mid), sync_dir=False)
            atomic_write(bad / f"{mid}.json", data)
            self.remove(mid)
        return bad


def _state(name: str, value: bytes) -> Record:
    if "\n" in name:
        raise ValueError(f"a spool state name has no newline: {name!r}")
    return Record(STATE, 0, name.encode() + b"\n" + value)
