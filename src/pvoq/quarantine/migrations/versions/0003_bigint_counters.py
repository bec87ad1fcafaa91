"""64-bit MIDs, counters, sums and sizes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

The space quota's byte counter (`held_counts` row `*bytes`) passes 2^31 once
the quarantines hold 2 GiB, which a 32-bit `integer` column refuses: every
store then failed on PostgreSQL. Every MID, counter, sum and size becomes a
`bigint` (each table rewritten once, by one `ALTER TABLE`), and the sequence
of `reasons.id` with it. SQLite's INTEGER is already 64-bit: nothing changes
there.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Referenced columns first: PostgreSQL then rechecks each foreign key against the new type.
WIDENED = [
    ("messages", ("id", "origin_mid", "size")),
    ("message_quarantines", ("message_id", "reason_id")),
    ("message_recipients", ("message_id", "rid")),
    ("attachments", ("message_id", "size")),
    ("reasons", ("id",)),
    ("message_bodies", ("message_id",)),
    ("audit", ("seq",)),
    ("audit_head", ("seq",)),
    ("held_counts", ("n",)),
]


def _retype(sql_type: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in WIDENED:
        op.execute(f"ALTER TABLE {table} "
                   + ", ".join(f"ALTER COLUMN {c} TYPE {sql_type}" for c in columns))
    op.execute(f"ALTER SEQUENCE IF EXISTS reasons_id_seq AS {sql_type}")


def upgrade() -> None:
    _retype("bigint")


def downgrade() -> None:
    _retype("integer")
