"""What an appliance process loads before anyone uses its console: issue 17's idle memory.

`pvoq gateway` and `pvoq manager` load the CLI and their role module; the
console (FastAPI, Starlette, Jinja2, uvicorn, pydantic) is built on its
first connection, rich only for a CLI table, argon2 only when a password is set
or checked, SQLAlchemy only on the manager, asyncssh on a gateway only when its
SSH service is enabled, and Alembic only when a migration is due. Each test runs a fresh interpreter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pvoq.quarantine.migrate import current, head
from pvoq.quarantine.store import QuarantineStore

CONSOLE = ("fastapi", "starlette", "uvicorn", "jinja2", "pydantic")


def _modules(code: str) -> set[str]:
    script = code + "\nimport sys\nprint(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    return set(done.stdout.split())


def _loaded(code: str) -> set[str]:
    return {m.split(".")[0] for m in _modules(code)}


# Loaded only when used: the operator CLI's commands (`pvoq cli`), a gateway's migration
# side, the tracking query, uvicorn for `/metrics`, SQLAlchemy's PostgreSQL dialect on SQLite.
ON_USE = ("pvoq.cli.operator", "pvoq.cli.quarantine", "pvoq.cli.migrate", "pvoq.cli.track",
          "pvoq.gateway.migration", "pvoq.logsub.tracking", "pvoq.web.api", "uvicorn",
          "sqlalchemy.dialects.postgresql")


def test_a_gateway_process_loads_no_console_store_or_table_library() -> None:
    loaded = _loaded("import pvoq.cli.main, pvoq.gateway.role")
    assert sorted(loaded & {*CONSOLE, "sqlalchemy", "alembic", "rich", "argon2",
                            "asyncssh"}) == []


def test_a_gateway_loads_asyncssh_only_for_its_ssh_service(tmp_path: Path) -> None:
    """The gateway's SSH command service is built only when `<ssh>` enables it; the keys
    module it shares with the gateway's commands imports asyncssh where it is used."""
    made = ("from pvoq.remote.service import CommandService\n"
            "from pvoq.remote.keys import AuthorizedKeys\n"
            f"AuthorizedKeys(__import__('pathlib').Path({str(tmp_path / 'ak')!r})).entries()\n")
    assert "asyncssh" in _loaded(made)
    assert "asyncssh" not in _loaded("from pvoq.remote.keys import AuthorizedKeys, SshFault")


def test_a_manager_process_loads_no_console_migration_or_table_library() -> None:
    loaded = _loaded("import pvoq.cli.main, pvoq.manager.role")
    assert sorted(loaded & {*CONSOLE, "alembic", "rich", "argon2"}) == []


def test_an_appliance_process_loads_what_it_seldom_uses_only_on_use(tmp_path: Path) -> None:
    started = ("import asyncio\n"
               "from pathlib import Path\n"
               "import pvoq.cli.main, pvoq.gateway.role, pvoq.manager.role\n"
               "from pvoq.metrics.server import MetricsServer\n"
               "from pvoq.quarantine.store import QuarantineStore\n"
               f"QuarantineStore('sqlite:///{tmp_path / 'q.db'}', Path({str(tmp_path)!r}))\n")
    assert sorted(_modules(started) & set(ON_USE)) == []


def test_the_operator_commands_load_with_pvoq_cli() -> None:
    listed = ("from click.testing import CliRunner\n"
              "from pvoq.cli.main import main\n"
              "result = CliRunner().invoke(main, ['cli', '-c', 'x', '--help'])\n"
              "assert 'quarantine' in result.output and 'track' in result.output, result.output\n")
    assert {"pvoq.cli.operator", "pvoq.cli.track", "pvoq.cli.migrate"} <= _modules(listed)


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
