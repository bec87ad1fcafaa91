"""What an appliance process loads before anyone uses its console: issue 17's idle memory.

`pvoq gateway` and `pvoq manager` load the CLI and their role module; the
console (FastAPI, Starlette, Jinja2, uvicorn, pydantic) is built on its
first connection, rich only for a CLI table, argon2 only when a password is set
or checked, SQLAlchemy only on the manager
and Alembic only when a migration is due. Each test runs a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pvoq.quarantine.migrate import current, head
from pvoq.quarantine.store import QuarantineStore

CONSOLE = ("fastapi", "starlette", "uvicorn", "jinja2", "pydantic")


def _loaded(code: str) -> set[str]:
    script = code + "\nimport sys\nprint(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    return {m.split(".")[0] for m in done.stdout.split()}


def test_a_gateway_process_loads_no_console_store_or_table_library() -> None:
    loaded = _loaded("import pvoq.cli.main, pvoq.gateway.role")
    assert sorted(loaded & {*CONSOLE, "sqlalchemy", "alembic", "rich", "argon2"}) == []


def test_a_manager_process_loads_no_console_migration_or_table_library() -> None:
    loaded = _loaded("import pvoq.cli.main, pvoq.manager.role")
    assert sorted(loaded & {*CONSOLE, "alembic", "rich", "argon2"}) == []


def test_a_store_at_the_head_revision_opens_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    opened = ("from pathlib import Path\n"
              "from pvoq.quarantine.store import QuarantineStore\n"
              f"QuarantineStore({url!r}, Path({str(tmp_path / 'bodies')!r}))\n")
    # A new database: the schema created and stamped without Alembic...
    assert "alembic" not in _loaded(opened)
    # ...with the version Alembic reads as its head; and opened again, still without it.
    store = QuarantineStore(url, tmp_path / "bodies", create=False)
    assert current(store.engine) == head()
    assert "alembic" not in _loaded(opened)
