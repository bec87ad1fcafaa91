"""The tracking index: what the manager knows of every message from the mail_logs it reads.

One SQLite database, `<data_dir>/tracking.db` (WAL), apart from the
quarantine store. Tables:

- `sources`: each log read (a gateway's, by its hostname, and the manager's
  own), with the reader's `Position` (inode, offset, head), `stored` (the
  bytes of the manager's copy of that gateway's lines the rows cover), the
  lines indexed and the time of the last line and of the last pull;
- `messages`: one row per (source, MID): ICID, first and last time, sender,
  Message-ID, subject, and where it came from (`origin_host`, `origin_mid`:
  on the manager the gateway and its MID; on a gateway the MID a release
  was originally);
- `recipients`: (source, MID, recipient);
- `events`: every line about a MID, in log order (its DCID when it names one);
- `conns`: every line about an ICID or a DCID that names no MID;
- `tokens`: each word (and pair of adjacent words) of each message's sender,
  recipients and subject, for tracking's "contains" filters.

`add` indexes a chunk of lines and moves the source's position in the same
transaction: the position and the rows it covers commit together, so a crash
leaves either both or neither (the kept copy is cut back to `stored` at the
next start, see `subscriber`). Every method takes the index's lock: the
subscription writes from a worker thread while a tracking query reads.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pvoq.fsutil import FILE_MODE, make_dir
from pvoq.logsub.lines import Parsed, parse
from pvoq.logsub.reader import Position

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
  inode INTEGER NOT NULL DEFAULT 0, offset INTEGER NOT NULL DEFAULT 0,
  head TEXT NOT NULL DEFAULT '', stored INTEGER NOT NULL DEFAULT 0,
  lines INTEGER NOT NULL DEFAULT 0, last_line_time REAL, last_pull REAL);
CREATE TABLE IF NOT EXISTS messages (
  src INTEGER NOT NULL, mid INTEGER NOT NULL, icid INTEGER, t_first REAL, t_last REAL,
  sender TEXT, message_id TEXT, subject TEXT, origin_host TEXT, origin_mid INTEGER,
  PRIMARY KEY (src, mid)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_time ON messages (t_first);
CREATE INDEX IF NOT EXISTS messages_message_id ON messages (message_id);
CREATE INDEX IF NOT EXISTS messages_origin ON messages (origin_host, origin_mid);
CREATE INDEX IF NOT EXISTS messages_origin_mid ON messages (src, origin_mid);
CREATE TABLE IF NOT EXISTS recipients (
  src INTEGER NOT NULL, mid INTEGER NOT NULL, rcpt TEXT NOT NULL,
  PRIMARY KEY (src, mid, rcpt)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recipients_address ON recipients (rcpt COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS messages_sender ON messages (sender COLLATE NOCASE);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY, src INTEGER NOT NULL, mid INTEGER NOT NULL, t REAL NOT NULL,
  dcid INTEGER, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_mid ON events (src, mid);
CREATE TABLE IF NOT EXISTS conns (
  seq INTEGER PRIMARY KEY, src INTEGER NOT NULL, kind TEXT NOT NULL, id INTEGER NOT NULL,
  t REAL NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS conns_id ON conns (src, kind, id);
CREATE TABLE IF NOT EXISTS tokens (
  token TEXT NOT NULL, src INTEGER NOT NULL, mid INTEGER NOT NULL,
  PRIMARY KEY (token, src, mid)) WITHOUT ROWID;
"""

TOKEN = re.compile(r"\w+")
"""A word of a sender, recipient or subject, as `tokens` holds it (lower case), prefixed by its
field: `s:` sender, `r:` recipient, `j:` subject. Tracking's "contains" filters use it to find
the few messages holding a word the filter holds whole, instead of scanning every message."""
FIELD_PREFIX = {"sender": "s:", "recipient": "r:", "subject": "j:"}


def words(field: str, value: str) -> set[str]:
    """The `tokens` entries of *value* in *field*: each word, and each pair of adjacent words
    (`j:invoice meeting`: two common words together are rarer than either)."""
    prefix = FIELD_PREFIX[field]
    found = TOKEN.findall(value.lower())
    return ({prefix + w for w in found}
            | {f"{prefix}{a} {b}" for a, b in zip(found, found[1:], strict=False)})

GATEWAY = "gateway"
MANAGER = "manager"


@dataclass(frozen=True)
class Source:
    """One log the index reads, and how far."""

    id: int
    name: str
    kind: str
    position: Position
    stored: int
    lines: int
    last_line_time: float | None
    last_pull: float | None


@dataclass(frozen=True)
class Pruned:
    """What one `prune` removed."""

    messages: int
    conns: int


@dataclass(frozen=True)
class Added:
    """What one `add` indexed."""

    lines: int
    last_line_time: float | None


class _Message:
    __slots__ = ("fields", "recipients")

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.recipients: set[str] = set()


class TrackingIndex:
    """The SQLite tracking index of one manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        make_dir(self.path.parent)
        if not self.path.exists():
            self.path.touch(mode=FILE_MODE)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # A commit lost to a machine crash is pulled again: the kept copy is cut back to
        # what the database covers at the next start, so NORMAL keeps lines exactly once.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for queries, with the lock held."""
        with self.lock:
            yield self.db

    # -- sources ------------------------------------------------------------------
    def source(self, name: str, kind: str) -> Source:
        """The source *name* (a gateway's hostname, or the manager's), created if new."""
        with self.lock:
            self.db.execute("INSERT OR IGNORE INTO sources (name, kind) VALUES (?, ?)",
                            (name.lower(), kind))
            row = self.db.execute(
                "SELECT id, name, kind, inode, offset, head, stored, lines, last_line_time, "
                "last_pull FROM sources WHERE name = ?", (name.lower(),)).fetchone()
        return _source(row)

    def sources(self) -> list[Source]:
        with self.lock:
            rows = self.db.execute(
                "SELECT id, name, kind, inode, offset, head, stored, lines, last_line_time, "
                "last_pull FROM sources ORDER BY name").fetchall()
        return [_source(r) for r in rows]

    def source_names(self) -> dict[int, str]:
        with self.lock:
            return dict(self.db.execute("SELECT id, name FROM sources").fetchall())

    def pulled(self, source: Source, when: float) -> None:
        """A pull of *source* that brought nothing new finished at *when*."""
        with self.lock:
            self.db.execute("UPDATE sources SET last_pull = ? WHERE id = ?", (when, source.id))

    def restart_copy(self, source: Source) -> None:
        """The kept copy of *source* was rolled over: the new one starts empty."""
        with self.lock:
            self.db.execute("UPDATE sources SET stored = 0 WHERE id = ?", (source.id,))

    # -- retention ------------------------------------------------------------------
    def prune(self, before: float, *, batch: int = 500, max_batches: int = 4000) -> Pruned:
        """Remove what is older than *before* (epoch): each message whose last line is (its
        recipients, words and lines with it) and each connection line. In transactions of
        *batch* messages, so that a tracking query waits for one batch at most."""
        messages = conns = 0
        for _ in range(max_batches):
            with self.lock:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    rows = self.db.execute(
                        "SELECT src, mid, sender, subject FROM messages "
                        "WHERE t_first < ? AND t_last < ? LIMIT ?",
                        (before, before, batch)).fetchall()
                    old = [(src, mid) for src, mid, _s, _j in rows]
                    tokens: list[tuple[str, int, int]] = []
                    for src, mid, sender, subject in rows:
                        m = _Message()
                        m.fields.update(sender=sender, subject=subject)
                        m.recipients.update(r for (r,) in self.db.execute(
                            "SELECT rcpt FROM recipients WHERE src = ? AND mid = ?", (src, mid)))
                        tokens.extend((w, src, mid) for w in _words(m))
                    self.db.executemany(
                        "DELETE FROM tokens WHERE token = ? AND src = ? AND mid = ?", tokens)
                    for table in ("recipients", "events", "messages"):
                        self.db.executemany(f"DELETE FROM {table} WHERE src = ? AND mid = ?",
                                            old)
                    gone = self.db.execute(
                        "DELETE FROM conns WHERE seq IN (SELECT seq FROM conns WHERE t < ? "
                        "ORDER BY seq LIMIT ?)", (before, batch)).rowcount
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
            messages += len(old)
            conns += gone
            if len(old) < batch and gone < batch:
                break
        return Pruned(messages, conns)

    # -- indexing -----------------------------------------------------------------
    def add(self, source: Source, lines: Iterable[str], *, position: Position,
            stored: int, pulled_at: float | None) -> Added:
        """Index *lines* of *source* and move it to *position* (and *stored*) at once."""
        events: list[tuple[int, int, float, int | None, str]] = []
        conns: list[tuple[int, str, int, float, str]] = []
        messages: dict[int, _Message] = {}
        count = 0
        last: float | None = None
        src = source.id
        for line in lines:
            count += 1
            p = parse(line)
            if p is None:
                continue
            last = p.time
            if p.mid is None:
                assert p.conn is not None and p.conn_id is not None
                conns.append((src, p.conn, p.conn_id, p.time, p.text))
                continue
            events.append((src, p.mid, p.time, p.dcid, p.text))
            _merge(messages, p)
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self._write(src, messages, events, conns)
                self.db.execute(
                    "UPDATE sources SET inode = ?, offset = ?, head = ?, stored = ?, "
                    "lines = lines + ?, last_line_time = coalesce(?, last_line_time), "
                    "last_pull = coalesce(?, last_pull) WHERE id = ?",
                    (position.inode, position.offset, position.head, stored, count, last,
                     pulled_at, src))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return Added(count, last)

    def _write(self, src: int, messages: dict[int, _Message],
               events: list[tuple[int, int, float, int | None, str]],
               conns: list[tuple[int, str, int, float, str]]) -> None:
        db = self.db
        if messages:
            db.executemany(
                "INSERT INTO messages (src, mid, icid, t_first, t_last, sender, message_id, "
                "subject, origin_host, origin_mid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (src, mid) DO UPDATE SET "
                "icid = coalesce(excluded.icid, icid), "
                "t_first = min(t_first, excluded.t_first), "
                "t_last = max(t_last, excluded.t_last), "
                "sender = coalesce(excluded.sender, sender), "
                "message_id = coalesce(excluded.message_id, message_id), "
                "subject = coalesce(excluded.subject, subject), "
                "origin_host = coalesce(excluded.origin_host, origin_host), "
                "origin_mid = coalesce(excluded.origin_mid, origin_mid)",
                [(src, mid, m.fields.get("icid"), m.fields["t_first"], m.fields["t_last"],
                  m.fields.get("sender"), m.fields.get("message_id"), m.fields.get("subject"),
                  m.fields.get("origin_host"), m.fields.get("origin_mid"))
                 for mid, m in messages.items()])
            db.executemany("INSERT OR IGNORE INTO recipients (src, mid, rcpt) VALUES (?, ?, ?)",
                           [(src, mid, r) for mid, m in messages.items()
                            for r in m.recipients])
            db.executemany("INSERT OR IGNORE INTO tokens (token, src, mid) VALUES (?, ?, ?)",
                           [(w, src, mid) for mid, m in messages.items()
                            for w in _words(m)])
        if events:
            db.executemany("INSERT INTO events (src, mid, t, dcid, text) VALUES (?, ?, ?, ?, ?)",
                           events)
        if conns:
            db.executemany("INSERT INTO conns (src, kind, id, t, text) VALUES (?, ?, ?, ?, ?)",
                           conns)


def _merge(messages: dict[int, _Message], p: Parsed) -> None:
    assert p.mid is not None
    m = messages.get(p.mid)
    if m is None:
        m = messages[p.mid] = _Message()
        m.fields["t_first"] = m.fields["t_last"] = p.time
    else:
        m.fields["t_last"] = max(m.fields["t_last"], p.time)
        m.fields["t_first"] = min(m.fields["t_first"], p.time)
    if p.recipient is not None:
        m.recipients.add(p.recipient)
    elif p.icid is not None:
        m.fields["icid"] = p.icid
    elif p.sender is not None:
        m.fields["sender"] = p.sender
    elif p.message_id is not None:
        m.fields["message_id"] = p.message_id
    elif p.subject is not None:
        m.fields["subject"] = p.subject
    elif p.origin_mid is not None:
        m.fields["origin_mid"] = p.origin_mid
        if p.origin_host is not None:
            m.fields["origin_host"] = p.origin_host


def _words(m: _Message) -> set[str]:
    found = set()
    for field in ("sender", "subject"):
        value = m.fields.get(field)
        if value:
            found |= words(field, value)
    for rcpt in m.recipients:
        found |= words("recipient", rcpt)
    return found


def _source(row: tuple[Any, ...]) -> Source:
    return Source(id=row[0], name=row[1], kind=row[2], position=Position(row[3], row[4], row[5]),
                  stored=row[6], lines=row[7], last_line_time=row[8], last_pull=row[9])
