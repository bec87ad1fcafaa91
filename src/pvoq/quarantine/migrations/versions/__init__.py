"""Alembic revisions, oldest first: 0001 the foundation schema, 0002 the quarantine
redesign, 0003 64-bit counters."""
