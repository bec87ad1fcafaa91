"""Store fixtures: every store test runs on SQLite and on a real PostgreSQL server.

The PostgreSQL server is started once per session (initdb + pg_ctl on a free
127.0.0.1 port, as an unprivileged user) and removed at the end. Missing
PostgreSQL binaries fail the tests: they are never skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pvoq.quarantine.store import QuarantineStore
from pvoq.testing.pgserver import PostgresServer

_counter = itertools.count(1)


class Clock:
    """A controlled clock: tests move time forward explicitly."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh empty database: SQLite in tmp_path, or a new database on the test server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'quarantine.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"t{next(_counter)}")


StoreFactory = Callable[..., QuarantineStore]


@pytest.fixture
def make_store(database_url: str, tmp_path: Path, clock: Clock) -> Iterator[StoreFactory]:
    """Open stores on the test database (several = several manager processes)."""
    opened: list[QuarantineStore] = []

    def make(**kwargs: object) -> QuarantineStore:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("node", f"manager-{len(opened) + 1}")
        s = QuarantineStore(database_url, tmp_path / "bodies", **kwargs)  # type: ignore[arg-type]
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(make_store: StoreFactory) -> QuarantineStore:
    return make_store()
