"""Two indexes no query uses, dropped (both dialects).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

`ix_messages_origin` and `ix_recipients_address` index the gateway's host
name and the recipient's address as written. Every query compares them
without regard to case, so it takes their case-insensitive indexes instead
(`ix_messages_origin_nocase` and `ix_recipients_address_nocase` on SQLite,
`ix_messages_origin_lower` and `ix_recipients_address_lower` on PostgreSQL).
Each arrival still wrote both: a random page of the recipients' index for
every message (about 4 KB of write-ahead log a transfer on SQLite,
docs/benchmarks.md "CPQ throughput"). Dropping an index takes no time worth
counting; the downgrade builds them again.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UNUSED = (("ix_messages_origin", "messages", "origin_host"),
          ("ix_recipients_address", "message_recipients", "address"))


def upgrade() -> None:
    for name, _, _ in UNUSED:
        op.execute(f"DROP INDEX IF EXISTS {name}")


def downgrade() -> None:
    for name, table, column in UNUSED:
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column})")
