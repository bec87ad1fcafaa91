"""Two trigram tables no search reads, dropped (SQLite).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

`fts_reasons` and `fts_attachments` held each held message's reasons and
attachment names for the trigram index. The reason filter reads the reasons
dictionary (`reasons`, a few thousand texts at most) and the attachment
filter the `attachments` rows, on SQLite as on PostgreSQL; neither table
was ever read, yet every arrival wrote one or both and every settlement
deleted from both. The downgrade builds them again from the held messages.
PostgreSQL never had them.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UNREAD = ("reasons", "attachments")


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in UNREAD:
            op.execute(f"DROP TABLE IF EXISTS fts_{name}")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in UNREAD:
        op.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS fts_{name} USING fts5({name}, "
                   "tokenize='trigram')")
    held = "SELECT id FROM messages WHERE state = 'held'"
    op.execute(f"INSERT INTO fts_reasons (rowid, reasons) SELECT message_id, "
               f"group_concat(reason, ' ') FROM message_quarantines WHERE message_id IN "
               f"({held}) AND state = 'held' GROUP BY message_id")
    op.execute(f"INSERT INTO fts_attachments (rowid, attachments) SELECT message_id, "
               f"group_concat(name, ' ') FROM attachments WHERE message_id IN ({held}) "
               f"GROUP BY message_id")
