"""The audit trail: every quarantine action and view, hash-chained under a secret key.

Each record holds who (`actor`), when (`at`), from where (`origin`: the
admin socket with the operator's uid and pid, an API client address...),
what (`action`, `detail`) and the hash of the record before it; its own
hash is HMAC-SHA-256, under the audit key, over all of that in a canonical
form. `verify` recomputes the chain: a record edited, removed or inserted
breaks it at the first such record, and a truncated tail no longer matches
`audit_head`, which holds the last sequence number and hash. Whoever can
edit the database but cannot read the key cannot recompute the chain.

The key is 32 random bytes in `audit.key` (mode 0600), beside the SQLite
database, or in the manager's data directory when the store is on
PostgreSQL (`key_path`). It is created at the first start (atomically, and
never overwritten) and read whenever a trail is opened (`AuditTrail.open`).
`audit_head.key_check` holds an HMAC of a fixed text under the key: a
manager given another key refuses to start (`AuditKeyError`) and `verify`
says "wrong key" instead of blaming a record. Managers sharing one
PostgreSQL database must share one `audit.key`.

A trail written before the key existed (plain SHA-256, `key_check` empty)
is keyed once, at the start that creates the key: the old chain is checked
as it was written, every record is re-hashed under the key in one
transaction, and an `audit-keyed` record says how many and whether the old
chain was intact. A trail with records and no `key_check` found when the key
already existed is never re-keyed (that would launder an edit): `verify`
reports it.

Appending first updates `audit_head` (a row lock on PostgreSQL, the write
lock on SQLite), so records from several manager processes form one chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import URL, Connection, Engine, make_url

from pvoq.errors import OperatorError
from pvoq.fsutil import fsync_dir
from pvoq.quarantine.schema import GENESIS, audit, audit_head

KEY_FILE = "audit.key"
KEY_BYTES = 32
KEY_MODE = 0o600
_CHECK_TEXT = b"pvoq audit key check v1"
_REKEY_BATCH = 1000


class AuditKeyError(OperatorError):
    """The audit key cannot be used: unreadable, malformed, or not this trail's key."""


def canonical(detail: dict[str, Any]) -> str:
    return json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)


def record_hash(seq: int, at: float, actor: str, origin: str, action: str, detail: str,
                prev_hash: str, key: bytes | None = None) -> str:
    """HMAC-SHA-256 under *key* of one record and the hash before it (a pure function);
    without a key, the plain SHA-256 of the trails written before keys existed."""
    material = "\x1f".join([str(seq), repr(float(at)), actor, origin, action, detail,
                            prev_hash]).encode("utf-8")
    if key is None:
        return hashlib.sha256(material).hexdigest()
    return hmac.new(key, material, hashlib.sha256).hexdigest()


def key_check(key: bytes) -> str:
    """What `audit_head.key_check` holds for *key* (tells keys apart, reveals nothing)."""
    return hmac.new(key, _CHECK_TEXT, hashlib.sha256).hexdigest()


# -- the key file ----------------------------------------------------------------
def key_path(url: str | URL, data_dir: Path) -> Path:
    """Where the audit key of the store at *url* lives: beside a SQLite database file,
    else (PostgreSQL, an in-memory database) in *data_dir*."""
    parsed = make_url(url) if isinstance(url, str) else url
    database = parsed.database or ""
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") \
            and not database.startswith("file:"):
        return Path(database).parent / KEY_FILE
    return Path(data_dir) / KEY_FILE


def read_key(path: Path) -> bytes:
    """The key in *path*; `FileNotFoundError` when there is none."""
    data = Path(path).read_bytes()
    if len(data) != KEY_BYTES:
        raise AuditKeyError(f"audit key {path}: {len(data)} bytes, not {KEY_BYTES}: not an "
                            "audit key (restore it from the backup or from another manager)")
    return data


def open_key(path: Path) -> tuple[bytes, bool]:
    """The audit key in *path*, created first if there is none (32 random bytes, mode
    0600 whatever the umask, written atomically, never over an existing file); and
    whether this call created it."""
    path = Path(path)
    try:
        return read_key(path), False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise AuditKeyError(f"audit key {path}: cannot read: {exc.strerror}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_MODE)
    try:
        os.fchmod(fd, KEY_MODE)
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)          # fails if the file appeared meanwhile: never overwrite
    except FileExistsError:
        return read_key(path), False
    finally:
        os.unlink(tmp)
    fsync_dir(path.parent)
    return key, True


def key_mode_problem(path: Path) -> str | None:
    """A sentence if *path* is readable or writable by others than its owner."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        return (f"audit key {path} is mode {mode:04o}: others than its owner can use it; "
                f"chmod 600 {path}")
    return None


# -- verification ------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """The result of `verify`: ok, how many records, and the first broken one (None when
    the trail cannot be checked at all: wrong key, no key)."""

    ok: bool
    records: int
    broken_at: int | None = None
    problem: str = ""


def verify_records(rows: Iterable[Any], head: tuple[int, str],
                   key: bytes | None = None) -> Verdict:
    """Check a chain of records (ordered by seq) against the head (pure); *key*: the audit
    key (None: the plain SHA-256 of an old trail)."""
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
        digest = record_hash(r.seq, r.at, r.actor, r.origin, r.action, r.detail, r.prev_hash,
                             key)
        if not hmac.compare_digest(digest, r.hash):
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


def _pages(conn: Connection) -> Iterator[Any]:
    """Every record in seq order, read a page at a time (a long trail is not held in
    memory; pages are read by seq, so rows updated meanwhile are not read twice)."""
    after: int | None = None
    while True:
        query = select(audit).order_by(audit.c.seq).limit(_REKEY_BATCH)
        if after is not None:
            query = query.where(audit.c.seq > after)
        rows = conn.execute(query).fetchall()
        yield from rows
        if len(rows) < _REKEY_BATCH:
            return
        after = int(rows[-1].seq)


class AuditTrail:
    """The trail in the database at *engine*, hashed under *key* (see module doc)."""

    def __init__(self, engine: Engine, clock: Callable[[], float], key: bytes, *,
                 key_file: Path | None = None) -> None:
        if len(key) != KEY_BYTES:
            raise AuditKeyError(f"an audit key is {KEY_BYTES} bytes, not {len(key)}")
        self.engine = engine
        self.clock = clock
        self.key = key
        self.key_file = key_file

    @classmethod
    def open(cls, engine: Engine, clock: Callable[[], float], key_file: Path,
             log: Callable[[str], None] | None = None) -> AuditTrail:
        """The trail with the key in *key_file* (created if missing), keyed first if it was
        written before keys (see module doc). `AuditKeyError` when the trail was keyed
        with another key: this process must not write to it."""
        key, created = open_key(key_file)
        trail = cls(engine, clock, key, key_file=Path(key_file))
        say = log or (lambda line: None)
        if created:
            say(f"Audit trail: created the audit key {key_file} (mode 0600); back it up, "
                "and give every manager sharing this database the same file")
        problem = key_mode_problem(Path(key_file))
        if problem:
            say(f"Audit trail: {problem}")
        note = trail.seal(rekey=created)
        if note:
            say(f"Audit trail: {note}")
        return trail

    def _lock_head(self, conn: Connection) -> tuple[int, str, str | None]:
        """Lock `audit_head` for this transaction; its (seq, hash, key_check)."""
        conn.execute(update(audit_head).where(audit_head.c.id == 1)
                     .values(seq=audit_head.c.seq))
        seq, digest, check = conn.execute(
            select(audit_head.c.seq, audit_head.c.hash, audit_head.c.key_check)
            .where(audit_head.c.id == 1)).one()
        return int(seq), str(digest), check

    def wrong_key(self) -> str:
        where = self.key_file if self.key_file is not None else "the audit key"
        return (f"wrong key: {where} is not the key this audit trail was written with "
                "(managers sharing one database must share one audit.key: copy the first "
                "manager's file here, mode 0600)")

    def seal(self, *, rekey: bool) -> str | None:
        """Make sure the trail is keyed with this key; what was done, for the log.

        A trail without `key_check` is keyed now when it has no records, or when *rekey*
        (this start created the key): its records are re-hashed under the key.
        """
        with self.engine.begin() as conn:
            seq, _, check = self._lock_head(conn)
            if check is not None:
                if not hmac.compare_digest(check, key_check(self.key)):
                    raise AuditKeyError(self.wrong_key())
                return None
            if seq == 0:
                conn.execute(update(audit_head).where(audit_head.c.id == 1)
                             .values(key_check=key_check(self.key)))
                return None
            if not rekey:
                return (f"NOT KEYED: {seq} records and no key check although the audit key "
                        f"{self.key_file} already existed; it is not re-keyed now (that "
                        "would hide an edit): see `audit verify`")
            return self._rekey(conn, seq)

    def _rekey(self, conn: Connection, seq: int) -> str:
        """Re-hash every record of an unkeyed trail under the key, then say so in it."""
        head = conn.execute(select(audit_head.c.seq, audit_head.c.hash)
                            .where(audit_head.c.id == 1)).one()
        old = verify_records(_pages(conn), (int(head[0]), str(head[1])))
        statement = (update(audit).where(audit.c.seq == bindparam("b_seq"))
                     .values(prev_hash=bindparam("b_prev"), hash=bindparam("b_hash")))
        prev, last, count = GENESIS, 0, 0
        batch: list[dict[str, Any]] = []
        for r in _pages(conn):
            digest = record_hash(r.seq, r.at, r.actor, r.origin, r.action, r.detail, prev,
                                 self.key)
            batch.append({"b_seq": r.seq, "b_prev": prev, "b_hash": digest})
            prev, last, count = digest, int(r.seq), count + 1
            if len(batch) >= _REKEY_BATCH:
                conn.execute(statement, batch)
                batch = []
        if batch:
            conn.execute(statement, batch)
        conn.execute(update(audit_head).where(audit_head.c.id == 1)
                     .values(seq=last, hash=prev, key_check=key_check(self.key)))
        state = ("intact" if old.ok else
                 f"BROKEN at record {old.broken_at} before keying: {old.problem}")
        self._append(conn, "system", "upgrade", "audit-keyed",
                     {"records": count, "written": seq, "unkeyed_chain": state})
        return (f"{count} records written before the audit key existed re-keyed under "
                f"{self.key_file}; the chain they formed was {state}")

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
        digest = record_hash(seq, at, actor, origin, action, text, prev, self.key)
        conn.execute(audit.insert().values(seq=seq, at=at, actor=actor, origin=origin,
                                           action=action, detail=text, prev_hash=prev,
                                           hash=digest))
        conn.execute(update(audit_head).where(audit_head.c.id == 1).values(hash=digest))
        return int(seq)

    def verify(self) -> Verdict:
        """Check the whole chain under the key (the key itself first)."""
        with self.engine.connect() as conn:
            seq, digest, check = conn.execute(
                select(audit_head.c.seq, audit_head.c.hash, audit_head.c.key_check)
                .where(audit_head.c.id == 1)).one()
            if check is None:
                return Verdict(False, 0, None, "the trail is not keyed: audit_head has no key "
                               "check (edited, or written by a manager without audit.key)")
            if not hmac.compare_digest(str(check), key_check(self.key)):
                return Verdict(False, 0, None, self.wrong_key())
            rows = conn.execute(select(audit).order_by(audit.c.seq))
            return verify_records(rows, (int(seq), str(digest)), self.key)

    def tail(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit).order_by(audit.c.seq.desc()).limit(limit))
            result = [dict(r._mapping) for r in rows]
        for r in result:
            r["detail"] = json.loads(r["detail"])
        return list(reversed(result))
