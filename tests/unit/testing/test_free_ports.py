"""Free ports for parallel test workers: each worker's own slice, no port handed out twice."""

from __future__ import annotations

import pytest

from pvoq.testing import ports
from pvoq.testing.ports import free_port, port_range


def _worker(monkeypatch: pytest.MonkeyPatch, name: str, count: int) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", name)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(count))


def test_workers_pick_from_slices_that_do_not_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    slices = []
    for i in range(4):
        _worker(monkeypatch, f"gw{i}", 4)
        slices.append(set(port_range()))
    for i in range(4):
        assert len(slices[i]) >= 100
        for j in range(i + 1, 4):
            assert not slices[i] & slices[j]
    assert max(max(s) for s in slices) < ports._ephemeral_low()


def test_a_port_is_in_the_workers_slice_and_never_handed_out_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _worker(monkeypatch, "gw2", 3)
    monkeypatch.setattr(ports, "_handed", set())
    mine = port_range()
    handed = [free_port() for _ in range(50)]
    assert all(p in mine for p in handed)
    assert len(set(handed)) == 50


def test_alone_the_whole_range_below_the_ephemeral_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert port_range() == range(10_000, max(10_001, ports._ephemeral_low()))
