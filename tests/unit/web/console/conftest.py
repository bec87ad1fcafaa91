"""Fixtures of the console's in-process tests: `ctx` (a gateway's) and `client`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from consolehelpers import make_context
from fastapi.testclient import TestClient

from pvoq.web.console.app import build_app
from pvoq.web.console.context import ConsoleContext


@pytest.fixture
def ctx(tmp_path: Path) -> ConsoleContext:
    return make_context(tmp_path)


@pytest.fixture
def client(ctx: ConsoleContext) -> Iterator[TestClient]:
    with TestClient(build_app(ctx), base_url="http://127.0.0.1") as c:
        yield c
