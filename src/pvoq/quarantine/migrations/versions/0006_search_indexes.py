"""Search indexes for ten million messages (PostgreSQL).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

`ix_messages_id_covering` covers a message's received time by its MID, so a
search that finds a few thousand MIDs elsewhere (a recipient, an attachment
name) sorts them newest first from this index alone instead of reading each
message's row. SQLite needs none: it pages in MID order.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE INDEX IF NOT EXISTS ix_messages_id_covering "
                   "ON messages (id) INCLUDE (received_at)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_messages_id_covering")
