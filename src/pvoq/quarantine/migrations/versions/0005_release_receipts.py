"""Release receipts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

`release_receipts` keeps what a gateway reported of a released message (one
row per recipient: delivered, bounced or expired, the downstream host and its
reply); `message_releases` who released a message (or sent a copy) and when.
Both start empty: nothing released before knew of receipts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "release_receipts",
        sa.Column("entry", BigInt, primary_key=True, autoincrement=False),
        sa.Column("rid", BigInt, primary_key=True, autoincrement=False),
        sa.Column("message_id", BigInt, nullable=False),
        sa.Column("receipt_id", sa.String(128), nullable=False),
        sa.Column("gateway", sa.String(255), nullable=False),
        sa.Column("gateway_mid", BigInt, nullable=False),
        sa.Column("address", sa.String(512), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_index("ix_receipts_message", "release_receipts", ["message_id"])
    op.create_table(
        "message_releases",
        sa.Column("entry", BigInt, primary_key=True, autoincrement=False),
        sa.Column("message_id", BigInt, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("origin", sa.String(128), nullable=False),
        sa.Column("how", sa.String(64), nullable=False),
        sa.Column("address", sa.String(512)),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_releases_message", "message_releases", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_releases_message", "message_releases")
    op.drop_table("message_releases")
    op.drop_index("ix_receipts_message", "release_receipts")
    op.drop_table("release_receipts")
