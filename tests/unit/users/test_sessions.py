"""Tests for pvoq.users.sessions: idle and absolute expiry, logout, per-user ending, kept
across restarts."""

from __future__ import annotations

import stat
from pathlib import Path

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


class TestKeptAcrossRestarts:
    def test_a_new_store_on_the_same_file_knows_the_sessions(self, tmp_path: Path) -> None:
        clock = Clock()
        path = tmp_path / "sessions.json"
        first = SessionStore(path, idle_seconds=100, absolute_seconds=1000, clock=clock)
        alice = first.create("alice", "::1")
        bob = first.create("bob", "192.0.2.7")
        clock.now += 50
        first.get(bob.id)
        first.save()                                   # the appliance's stop
        second = SessionStore(path, idle_seconds=100, absolute_seconds=1000, clock=clock)
        found = second.get(alice.id)
        assert found is not None
        assert (found.id, found.user, found.client, found.csrf) == (alice.id, "alice", "::1",
                                                                     alice.csrf)
        clock.now += 60                                # alice idle 110 s, bob 60 s
        assert second.get(bob.id) is not None
        assert SessionStore(path, idle_seconds=100, clock=clock).get(alice.id) is None

    def test_the_file_holds_no_session_id_and_is_private(self, tmp_path: Path) -> None:
        path = tmp_path / "sessions.json"
        session = SessionStore(path).create("alice", "::1")
        text = path.read_text()
        assert session.id not in text and "alice" in text
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_logout_and_ended_users_are_kept_ended(self, tmp_path: Path) -> None:
        path = tmp_path / "sessions.json"
        store = SessionStore(path)
        a, b, c = (store.create(u, "::1") for u in ("alice", "bob", "bob"))
        store.end(a.id)
        assert store.end_user("bob") == 2
        again = SessionStore(path)
        assert [again.get(s.id) for s in (a, b, c)] == [None, None, None]
        assert len(again) == 0

    def test_a_damaged_file_is_set_aside_and_nobody_is_logged_in(self, tmp_path: Path) -> None:
        path = tmp_path / "sessions.json"
        path.write_text('[{"key": "x"')
        store = SessionStore(path)
        assert len(store) == 0
        assert (tmp_path / "sessions.json.bad").read_text() == '[{"key": "x"'
        session = store.create("alice", "::1")
        assert SessionStore(path).get(session.id) is not None
