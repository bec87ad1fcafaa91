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

A database already at the head revision (read with a plain query, the head
read from the revision files) is left as it is without loading Alembic: a
manager that starts on an up-to-date database does not carry Alembic's
modules (about 10 MB) for the rest of its life.

`python -m pvoq.quarantine.migrate URL [upgrade|current|history]` runs the
same steps by hand.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from pvoq.quarantine.schema import create_schema, make_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
FOUNDATION = "0001"
MIGRATION_LOCK = 0x7076_6F71_6D69_6772   # "pvoqmigr": the advisory lock key of migrations


def alembic_config(connection: Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    revision = ScriptDirectory.from_config(cfg).get_current_head()
    assert revision is not None
    return revision


_ASSIGN = r'^{}\s*(?::[^=]*)?=\s*(?:"(\w+)"|\'(\w+)\'|None)\s*$'


def script_head() -> str | None:
    """The head revision, read from the revision files without Alembic (None when they do
    not name exactly one head: then only Alembic can tell)."""
    revisions: dict[str, str | None] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        found = re.search(_ASSIGN.format("revision"), source, re.MULTILINE)
        down = re.search(_ASSIGN.format("down_revision"), source, re.MULTILINE)
        if found is None or down is None:
            continue
        revisions[found.group(1) or found.group(2)] = down.group(1) or down.group(2)
    heads = set(revisions) - {d for d in revisions.values() if d is not None}
    return heads.pop() if len(heads) == 1 else None


def at_head(engine: Engine) -> bool:
    """Whether the database is stamped with the head revision (a plain query)."""
    wanted = script_head()
    if wanted is None or not inspect(engine).has_table("alembic_version"):
        return False
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    return [row[0] for row in rows] == [wanted]


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

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

    One process at a time per database (`migration_lock`); none needed, and Alembic not
    loaded, when it is at the head revision already.
    """
    if at_head(engine):
        return head_revision()
    with migration_lock(engine):
        return _migrate(engine)


def head_revision() -> str:
    """The head revision (from the files when they tell, else from Alembic)."""
    return script_head() or head()


def _migrate(engine: Engine) -> str:
    tables = set(inspect(engine).get_table_names())
    if "alembic_version" not in tables and "messages" not in tables:
        create_schema(engine)
        revision = script_head()
        with engine.begin() as conn:
            if revision is None:
                from alembic import command

                command.stamp(alembic_config(conn), "head")
                return head()
            # Alembic's own version table, stamped without loading Alembic.
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                              "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"))
            conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:revision)"),
                         {"revision": revision})
        return revision
    from alembic import command

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
        from alembic import command

        with engine.connect() as conn:
            command.history(alembic_config(conn))
    else:
        print(f"unknown command {what!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
