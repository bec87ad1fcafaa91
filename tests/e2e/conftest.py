"""End-to-end fixtures: real processes, real sockets, real TLS on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pvoq.testing.localdeploy import Deployment


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A manager, a gateway and a sink, initialised (not started); stopped afterwards."""
    dep = Deployment(tmp_path / "deploy", retry_min_s=0.5, retry_max_s=2.0)
    dep.init()
    try:
        yield dep
    finally:
        dep.stop_all()


@pytest.fixture
def running(deployment: Deployment) -> Deployment:
    """The same deployment with its three processes started."""
    deployment.start()
    return deployment
