"""Search words for ten million messages (PostgreSQL).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

`search_words` holds each held message's sender, recipients and subject words
in order, `search_vocabulary` each distinct word once with a trigram index
(`quarantine.words`): a text filter looks its pattern up among the distinct
words and follows the few that match, instead of a trigram bitmap over every
message. The upgrade fills both from the held messages (502 s at ten million
on two cores; docs/benchmarks.md). SQLite needs none: its trigram tables
answer the same searches.
"""

from __future__ import annotations

from alembic import op

from pvoq.quarantine import words

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for ddl in words.DDL + words.FILL_ALL + words.INDEXES:
        op.execute(ddl)
    op.execute("ANALYZE search_words")
    op.execute("ANALYZE search_vocabulary")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE IF EXISTS search_words")
        op.execute("DROP TABLE IF EXISTS search_vocabulary")
