"""The INSERT with ON CONFLICT of the database in use, SQLite's or PostgreSQL's.

Each dialect's module is imported on first use: a manager on SQLite never
loads SQLAlchemy's PostgreSQL dialect (about 2 MB resident).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def insert_for(dialect: str) -> Callable[..., Any]:
    """`insert()` of *dialect* (an engine's `dialect.name`), with `on_conflict_do_*`."""
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert
    from sqlalchemy.dialects import postgresql

    return postgresql.insert
