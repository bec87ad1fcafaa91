"""The quarantine database schema (SQLAlchemy Core) and engine setup.

One schema for SQLite (the embedded default: WAL, `synchronous=FULL`) and
PostgreSQL (psycopg 3; trigram indexes for text search). Tables:

- `quarantines`: the settings of each quarantine as the database knows them
  (so that several manager processes and a deleted quarantine agree).
- `messages`: one row per quarantined message (the manager's MID); `state`
  is `held` while any quarantine holds it, `settling` once one manager
  process has claimed its settlement, then `released` or `deleted`.
- `message_quarantines`: which quarantines hold a message, why, until when.
- `message_recipients`, `attachments`: what searches look at.
- `message_bodies`: bodies when they live in the database (`bodies=database`).
- `audit`, `audit_head`: the audit trail, HMAC-chained under the audit key.
- `saved_searches`.
- `search_words`, `search_vocabulary` (PostgreSQL): the held messages' words in
  order, and the distinct words (`quarantine.words`).
- `release_receipts`, `message_releases`: who released a message and what
  became of it on its gateway (`quarantine.receipts`).

Schema changes go through Alembic (`pvoq/quarantine/migrations`); the
`create_all` here creates a fresh database at the current revision.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    column,
    create_engine,
    event,
    table,
    text,
)
from sqlalchemy.engine import Engine

from pvoq.quarantine import words

metadata = MetaData()

# Every MID, counter, sum and size is 64-bit: the held bytes pass 2^31 at 2 GiB. SQLite's
# INTEGER is already 64-bit (and an `INTEGER PRIMARY KEY` is the rowid), so SQLite keeps it.
BigInt = BigInteger().with_variant(Integer(), "sqlite")

quarantines = Table(
    "quarantines", metadata,
    Column("name", String(64), primary_key=True),
    Column("builtin", Boolean, nullable=False),
    Column("retention_s", Float, nullable=False),
    Column("default_action", String(16), nullable=False),
    Column("overflow", Boolean, nullable=False),
    Column("settings", Text, nullable=False),     # JSON of the whole QuarantineSettings
    Column("deleted", Boolean, nullable=False, default=False),
)

messages = Table(
    "messages", metadata,
    Column("id", BigInt, primary_key=True, autoincrement=False),  # the manager's MID
    Column("transfer_id", String(128), nullable=False, unique=True),
    Column("origin_host", String(255), nullable=False),
    Column("origin_serial", String(64), nullable=False),
    Column("origin_mid", BigInt, nullable=False),
    Column("origin_ip", String(64), nullable=False),
    Column("sender", String(512), nullable=False),
    Column("recipients", Text, nullable=False),   # JSON list of {rid, address}
    Column("subject", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("size", BigInt, nullable=False),
    Column("body_path", Text, nullable=False),    # "" when the body is in the database
    Column("state", String(16), nullable=False),
    Column("claimed_by", String(128)),
    Column("claimed_at", Float),
    Column("settled_at", Float),
    Column("meta", Text, nullable=False),         # the CPQ metadata as received
    Column("sender_rev", String(512), nullable=False, server_default=""),  # lower, reversed
    Index("ix_messages_held", "state", "received_at", "size"),
    Index("ix_messages_sender_rev", "sender_rev"),
    Index("ix_messages_held_size", "state", "size"),
    Index("ix_messages_sender", "sender"),
)

message_quarantines = Table(
    "message_quarantines", metadata,
    Column("message_id", BigInt, ForeignKey("messages.id"), primary_key=True),
    Column("quarantine", String(64), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("stage", String(64), nullable=False),
    Column("received_at", Float, nullable=False),  # copied: time-ordered scans per quarantine
    Column("scheduled_exit", Float),
    Column("state", String(16), nullable=False),
    Column("acted_at", Float),
    Column("how", String(32)),
    Column("reason_id", BigInt),                 # reasons.id: searches scan the few reasons
    Index("ix_mq_held", "quarantine", "state", "received_at"),
    Index("ix_mq_held_mid", "quarantine", "state", "message_id"),
    Index("ix_mq_reason", "reason_id", "state", "quarantine", "message_id"),
    Index("ix_mq_exit", "state", "scheduled_exit"),
    Index("ix_mq_state_received", "state", "received_at"),
)

message_recipients = Table(
    "message_recipients", metadata,
    Column("message_id", BigInt, ForeignKey("messages.id"), primary_key=True),
    Column("rid", BigInt, primary_key=True),
    Column("address", String(512), nullable=False),
)

attachments = Table(
    "attachments", metadata,
    Column("message_id", BigInt, ForeignKey("messages.id"), primary_key=True),
    Column("n", Integer, primary_key=True),      # the part's index in its message
    Column("name", String(512), nullable=False),
    Column("size", BigInt, nullable=False),
    Column("name_rev", String(512), nullable=False, server_default=""),  # lower, reversed
    Index("ix_attachments_name", "name"),
    Index("ix_attachments_name_rev", "name_rev", "message_id"),
)

# The distinct reasons (virus names, outbreak rules, filter names): far fewer than
# messages, so a reason search scans these and then follows an index.
reasons = Table(
    "reasons", metadata,
    Column("id", BigInt, primary_key=True),
    Column("text", Text, nullable=False, unique=True),
)

message_bodies = Table(
    "message_bodies", metadata,
    Column("message_id", BigInt, primary_key=True, autoincrement=False),
    Column("body", LargeBinary, nullable=False),
)

audit = Table(
    "audit", metadata,
    Column("seq", BigInt, primary_key=True, autoincrement=False),
    Column("at", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("origin", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", Text, nullable=False),       # canonical JSON
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

audit_head = Table(
    "audit_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1: one row
    Column("seq", BigInt, nullable=False),
    Column("hash", String(64), nullable=False),
    # HMAC of a fixed text under the audit key: tells a wrong key from an edited record;
    # NULL until the trail is keyed (quarantine.audit)
    Column("key_check", String(64), nullable=True),
)

# Messages held, per quarantine and in all ("*"): kept in step by the store in the
# transactions that change them, so the commonest views need no count(*).
held_counts = Table(
    "held_counts", metadata,
    Column("quarantine", String(64), primary_key=True),
    Column("n", BigInt, nullable=False),
)
ALL_HELD = "*"
HELD_BYTES = "*bytes"   # the bytes of the messages held: what the space quota counts

saved_searches = Table(
    "saved_searches", metadata,
    Column("owner", String(128), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("query", Text, nullable=False),        # JSON of a SearchQuery
    Column("created_at", Float, nullable=False),
)

# Release receipts: what became of a released message on its gateway, one row per
# recipient (of the release, or of a Send Copy: `entry` is then the copy's MID), the
# first receipt for it winning; and who released each message, and when.
release_receipts = Table(
    "release_receipts", metadata,
    Column("entry", BigInt, primary_key=True, autoincrement=False),
    Column("rid", BigInt, primary_key=True, autoincrement=False),
    Column("message_id", BigInt, nullable=False),   # the held message (not a foreign key:
    Column("receipt_id", String(128), nullable=False),  # a copy's MID has no row)
    Column("gateway", String(255), nullable=False),
    Column("gateway_mid", BigInt, nullable=False),
    Column("address", String(512), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("host", String(255), nullable=False),
    Column("reply", Text, nullable=False),
    Column("at", Float, nullable=False),             # on the gateway
    Column("received_at", Float, nullable=False),    # here
    Index("ix_receipts_message", "message_id"),
)

message_releases = Table(
    "message_releases", metadata,
    Column("entry", BigInt, primary_key=True, autoincrement=False),  # a MID, or a copy's
    Column("message_id", BigInt, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("origin", String(128), nullable=False),
    Column("how", String(64), nullable=False),
    Column("address", String(512)),                  # a Send Copy's address
    Column("at", Float, nullable=False),
    Index("ix_releases_message", "message_id"),
)

GENESIS = "0" * 64

# Trigram indexes make contains/starts/ends-with searches indexable on PostgreSQL.
_PG_TRGM = [
    ("ix_messages_subject_trgm", "messages", "subject"),
    ("ix_messages_sender_trgm", "messages", "sender"),
    ("ix_recipients_address_trgm", "message_recipients", "address"),
    ("ix_reasons_text_trgm", "reasons", "text"),
    ("ix_attachments_name_trgm", "attachments", "name"),
]


# SQLite: one FTS5 trigram table per searchable text, rowid = MID, rows only for
# messages still held (removed when a settlement is claimed). A quoted phrase of
# three or more characters matches exactly the case-insensitive substrings.
# (The reasons and attachment names are searched in `reasons` and `attachments`
# themselves: revision 0009 dropped their trigram tables, which nothing read.)
FTS_COLUMNS = ("subject", "sender", "recipients")
fts = {name: table(f"fts_{name}", column("rowid"), column(name)) for name in FTS_COLUMNS}
SQLITE_DDL = [
    *(f"CREATE VIRTUAL TABLE IF NOT EXISTS fts_{name} USING fts5({name}, tokenize='trigram')"
      for name in FTS_COLUMNS),
    "CREATE INDEX IF NOT EXISTS ix_recipients_address_nocase "
    "ON message_recipients (address COLLATE NOCASE)",
    "CREATE INDEX IF NOT EXISTS ix_messages_sender_nocase ON messages (sender COLLATE NOCASE)",
    "CREATE INDEX IF NOT EXISTS ix_messages_origin_nocase "
    "ON messages (origin_host COLLATE NOCASE)",
]


# PostgreSQL: exact (case-insensitive) matches and ends-with ranges on B-trees.
PG_DDL = [
    "CREATE INDEX IF NOT EXISTS ix_recipients_address_lower "
    "ON message_recipients (lower(address))",
    "CREATE INDEX IF NOT EXISTS ix_messages_sender_lower ON messages (lower(sender))",
    "CREATE INDEX IF NOT EXISTS ix_messages_origin_lower ON messages (lower(origin_host))",
    "CREATE INDEX IF NOT EXISTS ix_messages_sender_rev_pattern "
    "ON messages (sender_rev text_pattern_ops)",
    "CREATE INDEX IF NOT EXISTS ix_attachments_name_rev_pattern "
    "ON attachments (name_rev text_pattern_ops)",
    # A few thousand MIDs found elsewhere sorted newest first without their rows.
    "CREATE INDEX IF NOT EXISTS ix_messages_id_covering ON messages (id) INCLUDE (received_at)",
]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    # The statement journal of an INSERT … SELECT (the intake's batches) in memory, not
    # in a temporary file written for every batch.
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for *url* with this project's per-dialect settings."""
    if url.startswith("sqlite"):
        # The last connection given back is the next handed out: the writer thread gets
        # its own again, whose page cache the other connections' writes did not void
        # (a rotation of pooled connections read a hundred pages again a batch).
        engine = create_engine(url, connect_args={"timeout": 30}, pool_use_lifo=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    """Create every table and index that is missing (a fresh database, or tests)."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            for name, table, column in _PG_TRGM:
                conn.execute(text(f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
                                  f"USING gin (lower({column}) gin_trgm_ops)"))
            for ddl in PG_DDL + words.DDL + words.INDEXES:
                conn.execute(text(ddl))
        if engine.dialect.name == "sqlite":
            for ddl in SQLITE_DDL:
                conn.execute(text(ddl))
        if conn.execute(audit_head.select()).first() is None:
            conn.execute(audit_head.insert().values(id=1, seq=0, hash=GENESIS))
