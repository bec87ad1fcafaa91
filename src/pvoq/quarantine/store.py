"""The quarantine store: metadata in SQL (SQLAlchemy Core), bodies on disk.

A message arrives once per transfer id (`messages.transfer_id` is unique: a
retry after a lost `250` finds the row and stores nothing). Its body is
written and fsync'd before the row is committed, and the row is committed
(SQLite WAL, `synchronous=FULL`) before CPQ answers `250`.

A message sits in one or more quarantines (`message_quarantines`). AsyncOS
semantics: it is delivered only once released from all of them, and never
once deleted from one. When no quarantine holds it any more the message is
*settled*: released (the caller queues its delivery, then calls
`mark_released`) or deleted (its body is removed).

This module never talks to the network.
"""

from __future__ import annotations

import builtins
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pvoq.fsutil import atomic_write, remove_durably

HELD = "held"
RELEASED = "released"
DELETED = "deleted"
BUILTIN_QUARANTINES = ("Policy", "Virus", "Outbreak", "Unclassified")

metadata = MetaData()

messages = Table(
    "messages", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # the manager's MID
    Column("transfer_id", String(128), nullable=False, unique=True),
    Column("origin_host", String(255), nullable=False, index=True),
    Column("origin_serial", String(64), nullable=False),
    Column("origin_mid", Integer, nullable=False),
    Column("origin_ip", String(64), nullable=False),
    Column("sender", String(512), nullable=False),
    Column("recipients", Text, nullable=False),   # JSON list of {rid, address}
    Column("subject", Text, nullable=False),
    Column("received_at", Float, nullable=False, index=True),
    Column("size", Integer, nullable=False),
    Column("body_path", Text, nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("settled_at", Float),
    Column("meta", Text, nullable=False),          # the CPQ metadata as received
)

message_quarantines = Table(
    "message_quarantines", metadata,
    Column("message_id", Integer, ForeignKey("messages.id"), primary_key=True),
    Column("quarantine", String(64), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("stage", String(64), nullable=False),
    Column("scheduled_exit", Float),
    Column("state", String(16), nullable=False, index=True),
    Column("acted_at", Float),
)


@dataclass(frozen=True)
class Outcome:
    """What an action did: from which quarantines, and whether the message settled."""

    mid: int
    acted_on: tuple[str, ...]
    settled: str | None  # RELEASED, DELETED or None (still held somewhere)


class QuarantineError(Exception):
    """An action names a message or quarantine that does not hold it."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


class QuarantineStore:
    def __init__(self, url: str, bodies_dir: Path) -> None:
        self.engine: Engine = create_engine(url)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        self.bodies = Path(bodies_dir)
        self.bodies.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.engine.dispose()

    # -- arrival -----------------------------------------------------------
    def find_transfer(self, transfer_id: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(select(messages.c.id).where(
                messages.c.transfer_id == transfer_id)).scalar()

    def add(self, *, mid: int, meta: dict[str, Any], body: bytes, origin_ip: str,
            subject: str, retention_s: float | None = None) -> tuple[int, bool]:
        """Store a quarantined message durably; `(mid, duplicate)`."""
        existing = self.find_transfer(meta["transfer_id"])
        if existing is not None:
            return existing, True
        path = self.bodies / f"{mid}.eml"
        atomic_write(path, body)
        now = time.time()
        origin = meta["origin"]
        try:
            with self.engine.begin() as conn:
                conn.execute(messages.insert().values(
                    id=mid, transfer_id=meta["transfer_id"], origin_host=origin["hostname"],
                    origin_serial=origin["serial"], origin_mid=origin["mid"],
                    origin_ip=origin_ip, sender=meta["sender"],
                    recipients=json.dumps(meta["recipients"]), subject=subject,
                    received_at=now, size=len(body), body_path=str(path), state=HELD,
                    meta=json.dumps(meta)))
                for q in meta["quarantines"]:
                    conn.execute(message_quarantines.insert().values(
                        message_id=mid, quarantine=q["name"], reason=q["reason"],
                        stage=q["stage"], state=HELD,
                        scheduled_exit=None if retention_s is None else now + retention_s))
        except IntegrityError:
            remove_durably(path)
            again = self.find_transfer(meta["transfer_id"])
            if again is None:
                raise
            return again, True
        return mid, False

    # -- views -------------------------------------------------------------
    def _quarantines_of(self, conn: Any, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
        result: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        if not ids:
            return result
        rows = conn.execute(select(message_quarantines).where(
            message_quarantines.c.message_id.in_(ids))).mappings()
        for row in rows:
            result[row["message_id"]].append(dict(row))
        return result

    def list(self, *, quarantine: str | None = None, limit: int = 100,
             offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Held messages, newest first, with a total count."""
        held = select(message_quarantines.c.message_id).where(
            message_quarantines.c.state == HELD)
        if quarantine:
            held = held.where(message_quarantines.c.quarantine == quarantine)
        where = messages.c.id.in_(held)
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(messages).where(where)).scalar()
            rows = [dict(r) for r in conn.execute(
                select(messages).where(where).order_by(messages.c.received_at.desc(),
                                                       messages.c.id.desc())
                .limit(limit).offset(offset)).mappings()]
            qs = self._quarantines_of(conn, [r["id"] for r in rows])
        for r in rows:
            r["quarantines"] = qs[r["id"]]
            r["recipients"] = json.loads(r["recipients"])
            r.pop("meta", None)
        return rows, int(total or 0)

    def get(self, mid: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(messages).where(messages.c.id == mid)).mappings().first()
            if row is None:
                return None
            result = dict(row)
            result["quarantines"] = self._quarantines_of(conn, [mid])[mid]
        result["recipients"] = json.loads(result["recipients"])
        result["meta"] = json.loads(result["meta"])
        return result

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per quarantine: (messages held, bytes held)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(message_quarantines.c.quarantine, func.count(), func.sum(messages.c.size))
                .join(messages, messages.c.id == message_quarantines.c.message_id)
                .where(message_quarantines.c.state == HELD)
                .group_by(message_quarantines.c.quarantine)).all()
        return {q: (int(n), int(size or 0)) for q, n, size in rows}

    # -- actions -----------------------------------------------------------
    def act(self, mid: int, action: str, quarantine: str | None = None) -> Outcome:
        """Release or delete *mid* from *quarantine* (or from all that hold it)."""
        if action not in (RELEASED, DELETED):
            raise ValueError(f"unknown action {action!r}")
        now = time.time()
        with self.engine.begin() as conn:
            state = conn.execute(select(messages.c.state).where(messages.c.id == mid)).scalar()
            if state is None:
                raise QuarantineError(f"No message with MID {mid} in the quarantines.")
            rows = conn.execute(select(message_quarantines).where(
                message_quarantines.c.message_id == mid)).mappings().all()
            targets = [r["quarantine"] for r in rows if r["state"] == HELD
                       and (quarantine is None or r["quarantine"] == quarantine)]
            if not targets:
                where = f' "{quarantine}"' if quarantine else " any quarantine"
                raise QuarantineError(f"MID {mid} is not held in{where}.")
            conn.execute(message_quarantines.update().where(
                message_quarantines.c.message_id == mid,
                message_quarantines.c.quarantine.in_(targets)).values(state=action, acted_at=now))
        return Outcome(mid, tuple(targets), self.settlement(mid))

    def settlement(self, mid: int) -> str | None:
        """RELEASED or DELETED once no quarantine holds *mid*; None while one does."""
        with self.engine.connect() as conn:
            states = [s for (s,) in conn.execute(select(message_quarantines.c.state).where(
                message_quarantines.c.message_id == mid))]
        if not states or HELD in states:
            return None
        return DELETED if DELETED in states else RELEASED

    def unsettled(self) -> builtins.list[int]:
        """Messages no quarantine holds whose settlement did not finish (a crash)."""
        still_held = select(message_quarantines.c.message_id).where(
            message_quarantines.c.state == HELD)
        with self.engine.connect() as conn:
            return [i for (i,) in conn.execute(select(messages.c.id).where(
                messages.c.state == HELD, messages.c.id.not_in(still_held)))]

    def finish(self, mid: int, state: str) -> None:
        """Record the settlement and drop the body (a release is already spooled)."""
        with self.engine.begin() as conn:
            path = conn.execute(select(messages.c.body_path).where(messages.c.id == mid)).scalar()
            conn.execute(messages.update().where(messages.c.id == mid).values(
                state=state, settled_at=time.time()))
        if path:
            remove_durably(Path(path))

    def read_body(self, mid: int) -> bytes:
        return (self.bodies / f"{mid}.eml").read_bytes()
