"""The quarantine redesign: settings, claims, search tables, bodies, audit, saved searches.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29

Recipients are copied from each message's JSON into `message_recipients`;
attachment names of messages quarantined before this revision are not
indexed (their bodies are not read during the upgrade).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

GENESIS = "0" * 64
FTS_COLUMNS = ("subject", "sender", "recipients", "reasons", "attachments")
TRGM = [
    ("ix_messages_subject_trgm", "messages", "subject"),
    ("ix_messages_sender_trgm", "messages", "sender"),
    ("ix_recipients_address_trgm", "message_recipients", "address"),
    ("ix_reasons_text_trgm", "reasons", "text"),
    ("ix_attachments_name_trgm", "attachments", "name"),
]


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("messages") as t:
        t.add_column(sa.Column("claimed_by", sa.String(128)))
        t.add_column(sa.Column("sender_rev", sa.String(512), nullable=False, server_default=""))
        t.add_column(sa.Column("claimed_at", sa.Float))
        t.drop_index("ix_messages_origin_host")
        t.drop_index("ix_messages_received_at")
        t.drop_index("ix_messages_state")
        t.create_index("ix_messages_held", ["state", "received_at", "size"])
        t.create_index("ix_messages_held_size", ["state", "size"])
        t.create_index("ix_messages_origin", ["origin_host"])
        t.create_index("ix_messages_sender", ["sender"])
        t.create_index("ix_messages_sender_rev", ["sender_rev"])
    with op.batch_alter_table("message_quarantines") as t:
        t.add_column(sa.Column("received_at", sa.Float, nullable=False, server_default="0"))
        t.add_column(sa.Column("how", sa.String(32)))
        t.add_column(sa.Column("reason_id", sa.Integer))
        t.drop_index("ix_message_quarantines_state")
    op.execute("UPDATE message_quarantines SET received_at = (SELECT received_at FROM messages "
               "WHERE messages.id = message_quarantines.message_id)")
    op.create_index("ix_mq_held", "message_quarantines", ["quarantine", "state", "received_at"])
    op.create_index("ix_mq_held_mid", "message_quarantines", ["quarantine", "state", "message_id"])
    op.create_index("ix_mq_reason", "message_quarantines",
                    ["reason_id", "state", "quarantine", "message_id"])
    op.create_index("ix_mq_exit", "message_quarantines", ["state", "scheduled_exit"])
    op.create_index("ix_mq_state_received", "message_quarantines", ["state", "received_at"])

    op.create_table(
        "quarantines",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("builtin", sa.Boolean, nullable=False),
        sa.Column("retention_s", sa.Float, nullable=False),
        sa.Column("default_action", sa.String(16), nullable=False),
        sa.Column("overflow", sa.Boolean, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
    )
    recipients = op.create_table(
        "message_recipients",
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id"), primary_key=True),
        sa.Column("rid", sa.Integer, primary_key=True),
        sa.Column("address", sa.String(512), nullable=False),
    )
    op.create_index("ix_recipients_address", "message_recipients", ["address"])
    op.create_table(
        "attachments",
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id"), primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("name_rev", sa.String(512), nullable=False, server_default=""),
    )
    op.create_index("ix_attachments_name", "attachments", ["name"])
    op.create_index("ix_attachments_name_rev", "attachments", ["name_rev", "message_id"])
    reasons = op.create_table(
        "reasons",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("text", sa.Text, nullable=False, unique=True),
    )
    distinct = [r for (r,) in bind.execute(sa.text(
        "SELECT DISTINCT reason FROM message_quarantines ORDER BY reason"))]
    if distinct:
        op.bulk_insert(reasons, [{"text": r} for r in distinct])
        op.execute("UPDATE message_quarantines SET reason_id = (SELECT id FROM reasons "
                   "WHERE reasons.text = message_quarantines.reason)")
    senders = bind.execute(sa.text("SELECT id, sender FROM messages")).all()
    for mid, sender in senders:
        bind.execute(sa.text("UPDATE messages SET sender_rev = :rev WHERE id = :id"),
                     {"rev": sender.lower()[::-1], "id": mid})
    op.create_table(
        "message_bodies",
        sa.Column("message_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("origin", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    counts = op.create_table(
        "held_counts",
        sa.Column("quarantine", sa.String(64), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    held = bind.execute(sa.text(
        "SELECT quarantine, count(*) FROM message_quarantines WHERE state = 'held' "
        "GROUP BY quarantine")).all()
    total = bind.execute(sa.text("SELECT count(*) FROM messages WHERE state = 'held'")).scalar()
    size = bind.execute(sa.text("SELECT coalesce(sum(size), 0) FROM messages "
                                "WHERE state = 'held'")).scalar()
    op.bulk_insert(counts, [{"quarantine": q, "n": n} for q, n in held]
                   + [{"quarantine": "*", "n": total or 0},
                      {"quarantine": "*bytes", "n": int(size or 0)}])
    op.create_table(
        "saved_searches",
        sa.Column("owner", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )

    # The search tables hold held messages only.
    rows = bind.execute(sa.text("SELECT id, recipients FROM messages "
                                "WHERE state = 'held'")).all()
    copied = [{"message_id": mid, "rid": r["rid"], "address": r["address"]}
              for mid, raw in rows for r in json.loads(raw)]
    if copied:
        op.bulk_insert(recipients, copied)

    if bind.dialect.name == "sqlite":
        for name in FTS_COLUMNS:
            op.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS fts_{name} USING fts5({name}, "
                       "tokenize='trigram')")
        op.execute("CREATE INDEX IF NOT EXISTS ix_recipients_address_nocase "
                   "ON message_recipients (address COLLATE NOCASE)")
        op.execute("CREATE INDEX IF NOT EXISTS ix_messages_sender_nocase "
                   "ON messages (sender COLLATE NOCASE)")
        op.execute("CREATE INDEX IF NOT EXISTS ix_messages_origin_nocase "
                   "ON messages (origin_host COLLATE NOCASE)")
        held_ids = "SELECT id FROM messages WHERE state = 'held'"
        op.execute(f"INSERT INTO fts_subject (rowid, subject) SELECT id, subject FROM messages "
                   f"WHERE id IN ({held_ids})")
        op.execute(f"INSERT INTO fts_sender (rowid, sender) SELECT id, sender FROM messages "
                   f"WHERE id IN ({held_ids})")
        op.execute(f"INSERT INTO fts_recipients (rowid, recipients) SELECT message_id, "
                   f"group_concat(address, ' ') FROM message_recipients WHERE message_id IN "
                   f"({held_ids}) GROUP BY message_id")
        op.execute(f"INSERT INTO fts_reasons (rowid, reasons) SELECT message_id, "
                   f"group_concat(reason, ' ') FROM message_quarantines WHERE message_id IN "
                   f"({held_ids}) GROUP BY message_id")
    if bind.dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, table, column in TRGM:
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
                       f"USING gin (lower({column}) gin_trgm_ops)")
        op.execute("CREATE INDEX IF NOT EXISTS ix_recipients_address_lower "
                   "ON message_recipients (lower(address))")
        op.execute("CREATE INDEX IF NOT EXISTS ix_messages_sender_lower ON messages "
                   "(lower(sender))")
        op.execute("CREATE INDEX IF NOT EXISTS ix_messages_origin_lower ON messages "
                   "(lower(origin_host))")
        op.execute("CREATE INDEX IF NOT EXISTS ix_messages_sender_rev_pattern "
                   "ON messages (sender_rev text_pattern_ops)")
        op.execute("CREATE INDEX IF NOT EXISTS ix_attachments_name_rev_pattern "
                   "ON attachments (name_rev text_pattern_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in FTS_COLUMNS:
            op.execute(f"DROP TABLE IF EXISTS fts_{name}")
        op.execute("DROP INDEX IF EXISTS ix_recipients_address_nocase")
        op.execute("DROP INDEX IF EXISTS ix_messages_sender_nocase")
        op.execute("DROP INDEX IF EXISTS ix_messages_origin_nocase")
    for table in ("saved_searches", "held_counts", "reasons", "audit_head", "audit",
                  "message_bodies", "attachments",
                  "message_recipients", "quarantines"):
        op.drop_table(table)
    op.drop_index("ix_mq_state_received", "message_quarantines")
    op.drop_index("ix_mq_reason", "message_quarantines")
    op.drop_index("ix_mq_held_mid", "message_quarantines")
    op.drop_index("ix_mq_exit", "message_quarantines")
    op.drop_index("ix_mq_held", "message_quarantines")
    with op.batch_alter_table("message_quarantines") as t:
        t.drop_column("reason_id")
        t.drop_column("how")
        t.drop_column("received_at")
        t.create_index("ix_message_quarantines_state", ["state"])
    with op.batch_alter_table("messages") as t:
        t.drop_index("ix_messages_sender_rev")
        t.drop_index("ix_messages_sender")
        t.drop_index("ix_messages_origin")
        t.drop_index("ix_messages_held_size")
        t.drop_index("ix_messages_held")
        t.create_index("ix_messages_state", ["state"])
        t.create_index("ix_messages_received_at", ["received_at"])
        t.create_index("ix_messages_origin_host", ["origin_host"])
        t.drop_column("sender_rev")
        t.drop_column("claimed_at")
        t.drop_column("claimed_by")
