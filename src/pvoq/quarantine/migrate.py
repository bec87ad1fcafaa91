"""Schema migrations of the quarantine database (Alembic), run when a store opens.

- A new, empty database gets the current schema at once (`create_all`) and
  is stamped with the head revision.
- A database from before migrations existed (the foundation schema, no
  `alembic_version` table) is stamped `0001` and upgraded.
- Any other database is upgraded to the head revision.

On PostgreSQL these steps run under a session advisory lock on a fixed key
(`MIGRATION_LOCK`, per database): managers started at once on one database
take turns, and the later ones find it at the head revision. SQLite needs no
such lock (its file lock already serialises the writers).

`python -m pvoq.quarantine.migrate URL [upgrade|current|history]` runs the
same steps by hand.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from pvoq.quarantine.schema import create_schema, make_engine

MIGRATIONS = Path(__file__).parent / "migrations"
FOUNDATION = "0001"
MIGRATION_LOCK = 0x7076_6F71_6D69_6772   # "pvoqmigr": the advisory lock key of migrations


def alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    revision = ScriptDirectory.from_config(cfg).get_current_head()
    assert revision is not None
    return revision


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Hold the database's migration lock (PostgreSQL; nothing elsewhere) for the block."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})


def migrate(engine: Engine) -> str:
    """Bring the database at *engine* to the head revision; the revision it is at.

    One process at a time per database (`migration_lock`).
    """
    with migration_lock(engine):
        return _migrate(engine)


def _migrate(engine: Engine) -> str:
    tables = set(inspect(engine).get_table_names())
    if "alembic_version" not in tables and "messages" not in tables:
        create_schema(engine)
        with engine.begin() as conn:
            command.stamp(alembic_config(conn), "head")
        return head()
    with engine.begin() as conn:
        cfg = alembic_config(conn)
        if "alembic_version" not in tables:
            command.stamp(cfg, FOUNDATION)
        command.upgrade(cfg, "head")
    return head()


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m pvoq.quarantine.migrate URL [upgrade|current|history]",
              file=sys.stderr)
        return 2
    engine = make_engine(argv[0])
    what = argv[1] if len(argv) > 1 else "upgrade"
    if what == "upgrade":
        print(f"at revision {migrate(engine)}")
    elif what == "current":
        print(current(engine) or "none")
    elif what == "history":
        with engine.connect() as conn:
            command.history(alembic_config(conn))
    else:
        print(f"unknown command {what!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
