"""Fixtures every test directory may use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pvoq.testing.pgserver import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the whole session (the tests fail, never skip, without one)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()
