"""Tests for pvoq.users.sessions: idle and absolute expiry, logout, per-user ending."""

from __future__ import annotations

from pvoq.users import SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


def test_idle_expiry_restarts_on_use() -> None:
    clock = Clock()
    store = SessionStore(idle_seconds=100, absolute_seconds=1000, clock=clock)
    session = store.create("alice", "::1")
    clock.now += 90
    assert store.get(session.id) is session
    clock.now += 90
    assert store.get(session.id) is session
    clock.now += 101
    assert store.get(session.id) is None


def test_absolute_expiry_even_when_busy() -> None:
    clock = Clock()
    store = SessionStore(idle_seconds=100, absolute_seconds=250, clock=clock)
    session = store.create("alice", "::1")
    for _ in range(3):
        clock.now += 80
        assert store.get(session.id) is not None
    clock.now += 80
    assert store.get(session.id) is None


def test_end_and_end_user() -> None:
    store = SessionStore()
    a, b, c = store.create("alice", "::1"), store.create("alice", "::1"), store.create("bob", "::1")
    store.end(a.id)
    assert store.get(a.id) is None and store.get(b.id) is not None
    assert store.end_user("alice") == 1
    assert store.get(b.id) is None and store.get(c.id) is not None
    assert a.csrf != b.csrf and len(a.id) >= 40
