"""Scan fixtures: a real clamd with a test-written signature database, and message builders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scanhelpers import start_clamd

from pvoq.testing.clamd import ClamdProcess


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdProcess]:
    """One clamd for the scan unit tests, on a Unix socket, with the EICAR signatures."""
    proc = start_clamd(tmp_path_factory.mktemp("clamd"))
    try:
        yield proc
    finally:
        proc.stop()
