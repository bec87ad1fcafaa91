"""The foundation schema: messages and the quarantines holding them.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("transfer_id", sa.String(128), nullable=False, unique=True),
        sa.Column("origin_host", sa.String(255), nullable=False, index=True),
        sa.Column("origin_serial", sa.String(64), nullable=False),
        sa.Column("origin_mid", sa.Integer, nullable=False),
        sa.Column("origin_ip", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(512), nullable=False),
        sa.Column("recipients", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False, index=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("body_path", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("settled_at", sa.Float),
        sa.Column("meta", sa.Text, nullable=False),
    )
    op.create_table(
        "message_quarantines",
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id"), primary_key=True),
        sa.Column("quarantine", sa.String(64), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("stage", sa.String(64), nullable=False),
        sa.Column("scheduled_exit", sa.Float),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("acted_at", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("message_quarantines")
    op.drop_table("messages")
