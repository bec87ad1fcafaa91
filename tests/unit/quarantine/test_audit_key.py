"""Tests for the keyed audit chain (`quarantine.audit`): HMAC-SHA-256 under `audit.key`, the
key file (0600, created once, never overwritten), a wrong key told apart from an edited
record, and the one-time keying of a trail written before keys; SQLite and PostgreSQL."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from pvoq.quarantine.audit import (
    KEY_BYTES,
    AuditKeyError,
    AuditTrail,
    canonical,
    key_path,
    open_key,
    record_hash,
)
from pvoq.quarantine.migrate import alembic_config, current, head
from pvoq.quarantine.schema import GENESIS, audit, audit_head, make_engine
from pvoq.quarantine.store import QuarantineStore


@pytest.fixture
def engine(make_store: Any) -> Engine:
    """A migrated database (SQLite or PostgreSQL) with an empty trail."""
    store: QuarantineStore = make_store()
    return store.engine


def trail(engine: Engine, key_file: Path, n: int = 0, log: list[str] | None = None
          ) -> AuditTrail:
    opened = AuditTrail.open(engine, lambda: 1_800_000_000.0, key_file,
                             None if log is None else log.append)
    for i in range(n):
        opened.append("alice", "admin-socket (uid 1000, pid 7)", "search", {"i": i})
    return opened


def recompute_unkeyed(engine: Engine, start: int, **changes: Any) -> None:
    """What an editor of the database without the key would do: change record *start* and
    recompute the plain SHA-256 chain from there to the head."""
    with engine.begin() as conn:
        if changes:
            conn.execute(update(audit).where(audit.c.seq == start).values(**changes))
        rows = conn.execute(select(audit).order_by(audit.c.seq)).fetchall()
        prev = GENESIS
        for r in rows:
            if r.seq >= start:
                digest = record_hash(r.seq, r.at, r.actor, r.origin, r.action, r.detail, prev)
                conn.execute(update(audit).where(audit.c.seq == r.seq)
                             .values(prev_hash=prev, hash=digest))
                prev = digest
            else:
                prev = r.hash
        conn.execute(update(audit_head).where(audit_head.c.id == 1).values(hash=prev))


class TestKeyFile:
    def test_created_once_0600_whatever_the_umask(self, tmp_path: Path) -> None:
        path = tmp_path / "audit.key"
        old = os.umask(0)
        try:
            key, created = open_key(path)
        finally:
            os.umask(old)
        assert created and len(key) == KEY_BYTES
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes() == key
        assert open_key(path) == (key, False)
        assert [p.name for p in tmp_path.iterdir()] == ["audit.key"]  # no temporary left

    def test_an_existing_file_is_never_overwritten(self, tmp_path: Path) -> None:
        path = tmp_path / "audit.key"
        path.write_bytes(b"k" * KEY_BYTES)
        assert open_key(path) == (b"k" * KEY_BYTES, False)
        assert path.read_bytes() == b"k" * KEY_BYTES

    def test_a_file_that_is_not_a_key_is_refused_by_name(self, tmp_path: Path) -> None:
        path = tmp_path / "audit.key"
        path.write_bytes(b"short")
        with pytest.raises(AuditKeyError, match=r"audit.key: 5 bytes, not 32"):
            open_key(path)
        assert path.read_bytes() == b"short"

    def test_where_the_key_lives(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        assert key_path(f"sqlite:///{tmp_path / 'db' / 'quarantine.db'}", data) == \
            tmp_path / "db" / "audit.key"
        assert key_path("postgresql+psycopg://pvoq@127.0.0.1:5432/pvoq", data) == \
            data / "audit.key"
        assert key_path("sqlite://", data) == data / "audit.key"

    def test_an_open_key_file_is_reported(self, engine: Engine, tmp_path: Path) -> None:
        path = tmp_path / "audit.key"
        path.write_bytes(os.urandom(KEY_BYTES))
        path.chmod(0o644)
        lines: list[str] = []
        trail(engine, path, log=lines)
        assert any("mode 0644" in line and "chmod 600" in line for line in lines), lines


class TestKeyedChain:
    def test_records_are_hmac_under_the_key(self, engine: Engine, tmp_path: Path) -> None:
        t = trail(engine, tmp_path / "audit.key", 3)
        with engine.connect() as conn:
            r = conn.execute(select(audit).where(audit.c.seq == 2)).one()
        assert r.hash == record_hash(r.seq, r.at, r.actor, r.origin, r.action, r.detail,
                                     r.prev_hash, t.key)
        assert r.hash != record_hash(r.seq, r.at, r.actor, r.origin, r.action, r.detail,
                                     r.prev_hash)
        assert t.verify().ok and t.verify().records == 3

    def test_an_edit_with_the_unkeyed_chain_recomputed_is_detected(
            self, engine: Engine, tmp_path: Path) -> None:
        """Changing the actor and recomputing SHA-256 to the head no longer passes."""
        t = trail(engine, tmp_path / "audit.key", 5)
        recompute_unkeyed(engine, 3, actor="mallory")
        verdict = t.verify()
        assert not verdict.ok
        assert (verdict.broken_at, verdict.records) == (3, 2)
        assert verdict.problem == "record 3 was altered"

    def test_a_removed_record_with_the_chain_recomputed_is_detected(
            self, engine: Engine, tmp_path: Path) -> None:
        t = trail(engine, tmp_path / "audit.key", 4)
        with engine.begin() as conn:
            conn.execute(audit.delete().where(audit.c.seq == 4))
            conn.execute(update(audit_head).values(seq=3))
            conn.execute(update(audit).where(audit.c.seq == 3).values(detail=canonical({})))
        recompute_unkeyed(engine, 3)
        assert t.verify().broken_at == 3

    def test_a_second_trail_with_the_same_key_continues_the_chain(
            self, engine: Engine, tmp_path: Path) -> None:
        """Two manager processes sharing the database and the key form one chain."""
        a = trail(engine, tmp_path / "audit.key", 2)
        b = trail(engine, tmp_path / "audit.key", 2)
        a.append("bob", "api 127.0.0.1", "view", {"mid": 1})
        assert a.verify().ok and b.verify().records == 5


class TestWrongKey:
    def test_a_manager_with_another_key_does_not_start(self, engine: Engine,
                                                       tmp_path: Path) -> None:
        trail(engine, tmp_path / "first" / "audit.key", 2)
        other = tmp_path / "second" / "audit.key"
        with pytest.raises(AuditKeyError, match=r"wrong key: .*second/audit.key is not the "
                           r"key this audit trail was written with .*copy the first"):
            trail(engine, other)
        with engine.connect() as conn:   # nothing was written with the other key
            assert conn.execute(select(audit_head.c.seq)).scalar() == 2

    def test_verify_with_another_key_says_wrong_key(self, engine: Engine,
                                                    tmp_path: Path) -> None:
        trail(engine, tmp_path / "audit.key", 2)
        stranger = AuditTrail(engine, lambda: 0.0, b"x" * KEY_BYTES,
                              key_file=tmp_path / "elsewhere" / "audit.key")
        verdict = stranger.verify()
        assert not verdict.ok and verdict.broken_at is None
        assert verdict.problem.startswith("wrong key: ")
        assert "elsewhere/audit.key" in verdict.problem


def unkeyed_trail(engine: Engine, n: int) -> None:
    """A trail as managers before keys wrote it: plain SHA-256, no key check."""
    prev = GENESIS
    with engine.begin() as conn:
        conn.execute(audit.delete())
        for seq in range(1, n + 1):
            detail = canonical({"i": seq})
            digest = record_hash(seq, 1000.0 + seq, "root", "admin-socket", "search", detail,
                                 prev)
            conn.execute(audit.insert().values(seq=seq, at=1000.0 + seq, actor="root",
                                               origin="admin-socket", action="search",
                                               detail=detail, prev_hash=prev, hash=digest))
            prev = digest
        conn.execute(update(audit_head).values(seq=n, hash=prev, key_check=None))


class TestUpgrade:
    def test_the_start_that_creates_the_key_keys_the_old_trail(
            self, engine: Engine, tmp_path: Path) -> None:
        unkeyed_trail(engine, 3)
        lines: list[str] = []
        t = trail(engine, tmp_path / "audit.key", log=lines)
        assert any("3 records written before the audit key existed re-keyed" in line
                   and "was intact" in line for line in lines), lines
        verdict = t.verify()
        assert verdict.ok and verdict.records == 4
        last = t.tail(1)[0]
        assert (last["actor"], last["action"], last["detail"]) == (
            "system", "audit-keyed",
            {"records": 3, "written": 3, "unkeyed_chain": "intact"})
        assert [r["actor"] for r in t.tail(4)[:3]] == ["root"] * 3   # content kept
        # From now on an editor cannot recompute the old records either.
        recompute_unkeyed(engine, 1, actor="mallory")
        assert t.verify().broken_at == 1

    def test_a_broken_old_trail_is_keyed_as_found_and_says_so(
            self, engine: Engine, tmp_path: Path) -> None:
        unkeyed_trail(engine, 3)
        with engine.begin() as conn:
            conn.execute(update(audit).where(audit.c.seq == 2).values(actor="mallory"))
        t = trail(engine, tmp_path / "audit.key")
        assert t.tail(1)[0]["detail"]["unkeyed_chain"] == \
            "BROKEN at record 2 before keying: record 2 was altered"

    def test_no_rekeying_when_the_key_already_existed(self, engine: Engine,
                                                      tmp_path: Path) -> None:
        """An editor who empties the key check and recomputes SHA-256 gets nothing re-keyed:
        the key already existed, so verify reports the trail unkeyed."""
        path = tmp_path / "audit.key"
        trail(engine, path, 3)
        unkeyed_trail(engine, 3)        # the editor's rewrite, key check emptied
        lines: list[str] = []
        t = trail(engine, path, log=lines)
        assert any("NOT KEYED" in line for line in lines), lines
        verdict = t.verify()
        assert not verdict.ok and "not keyed" in verdict.problem

    def test_a_database_from_0003_is_migrated_and_keyed(self, database_url: str,
                                                        tmp_path: Path) -> None:
        """Migration 0004 adds the key check; the first start with a key keys the trail."""
        engine = make_engine(database_url)
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), "0003")
            with engine.begin() as conn:
                prev = GENESIS
                for seq in (1, 2):
                    digest = record_hash(seq, 5.0, "root", "admin-socket", "view", "{}", prev)
                    conn.exec_driver_sql(
                        "INSERT INTO audit (seq, at, actor, origin, action, detail, prev_hash, "
                        f"hash) VALUES ({seq}, 5.0, 'root', 'admin-socket', 'view', '{{}}', "
                        f"'{prev}', '{digest}')")
                    prev = digest
                conn.exec_driver_sql(f"UPDATE audit_head SET seq = 2, hash = '{prev}'")
        finally:
            engine.dispose()
        store = QuarantineStore(database_url, tmp_path / "bodies")
        try:
            assert current(store.engine) == head()
            t = trail(store.engine, tmp_path / "audit.key")
            assert t.verify().ok and t.verify().records == 3
        finally:
            store.close()

