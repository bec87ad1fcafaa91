"""The audit trail's key check.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

The audit chain is now HMAC-SHA-256 under a key kept outside the database
(`audit.key`, mode 0600): whoever can edit the database cannot recompute
it. `audit_head.key_check` holds an HMAC of a fixed text under that key, so
that a manager given another key is told so instead of finding every record
"altered". It starts empty: the manager that creates the key re-keys the
records written before (`quarantine.audit`), which no migration can do,
since the key is not in the database.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_head", sa.Column("key_check", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("key_check")
