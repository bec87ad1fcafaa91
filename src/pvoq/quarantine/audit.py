"""The audit trail: every quarantine action and view, hash-chained.

Each record holds who (`actor`), when (`at`), from where (`origin`: the
admin socket, an API client address...), what (`action`, `detail`) and the
hash of the record before it; its own hash is SHA-256 over all of that in a
canonical form. `verify` recomputes the chain: a record edited, removed or
inserted breaks it at the first such record, and a truncated tail no longer
matches `audit_head`, which holds the last sequence number and hash.

Appending first updates `audit_head` (a row lock on PostgreSQL, the write
lock on SQLite), so records from several manager processes form one chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection, Engine

from pvoq.quarantine.schema import GENESIS, audit, audit_head


def canonical(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)


def record_hash(seq: int, at: float, actor: str, origin: str, action: str, detail: str,
                prev_hash: str) -> str:
    """SHA-256 of one record and the hash before it (a pure function)."""
    material = "\x1f".join([str(seq), repr(float(at)), actor, origin, action, detail, prev_hash])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """The result of `verify`: ok, how many records, and the first broken one."""

    ok: bool
    records: int
    broken_at: int | None = None
    problem: str = ""


def verify_records(rows: Iterable[Any], head: tuple[int, str]) -> Verdict:
    """Check a chain of records (ordered by seq) against the head (pure)."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for r in rows:
        if r.seq != expected_seq:
            return Verdict(False, count, expected_seq,
                           f"record {expected_seq} is missing (next is {r.seq})")
        if r.prev_hash != prev:
            return Verdict(False, count, r.seq, f"record {r.seq} does not follow record "
                           f"{r.seq - 1} (removed or edited)")
        digest = record_hash(r.seq, r.at, r.actor, r.origin, r.action, r.detail, r.prev_hash)
        if digest != r.hash:
            return Verdict(False, count, r.seq, f"record {r.seq} was altered")
        prev = r.hash
        expected_seq += 1
        count += 1
    head_seq, head_hash = head
    if head_seq != count or head_hash != prev:
        return Verdict(False, count, count + 1,
                       f"the trail ends at record {count} but {head_seq} were written "
                       "(records removed from the end)")
    return Verdict(True, count)


class AuditTrail:
    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock

    def append(self, actor: str, origin: str, action: str, detail: dict[str, Any],
               conn: Connection | None = None) -> int:
        """Write one record; its sequence number."""
        if conn is None:
            with self.engine.begin() as own:
                return self._append(own, actor, origin, action, detail)
        return self._append(conn, actor, origin, action, detail)

    def _append(self, conn: Connection, actor: str, origin: str, action: str,
                detail: dict[str, Any]) -> int:
        conn.execute(update(audit_head).where(audit_head.c.id == 1)
                     .values(seq=audit_head.c.seq + 1))
        seq, prev = conn.execute(select(audit_head.c.seq, audit_head.c.hash)
                                 .where(audit_head.c.id == 1)).one()
        at = self.clock()
        text = canonical(detail)
        digest = record_hash(seq, at, actor, origin, action, text, prev)
        conn.execute(audit.insert().values(seq=seq, at=at, actor=actor, origin=origin,
                                           action=action, detail=text, prev_hash=prev,
                                           hash=digest))
        conn.execute(update(audit_head).where(audit_head.c.id == 1).values(hash=digest))
        return int(seq)

    def verify(self) -> Verdict:
        with self.engine.connect() as conn:
            head = conn.execute(select(audit_head.c.seq, audit_head.c.hash)
                                .where(audit_head.c.id == 1)).one()
            rows = conn.execute(select(audit).order_by(audit.c.seq))
            return verify_records(rows, (int(head[0]), str(head[1])))

    def tail(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit).order_by(audit.c.seq.desc()).limit(limit))
            result = [dict(r._mapping) for r in rows]
        for r in result:
            r["detail"] = json.loads(r["detail"])
        return list(reversed(result))
