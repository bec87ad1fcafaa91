"""PostgreSQL-only store tests: 64-bit counters, and managers started at once on one database."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from unittest.mock import ANY

from alembic import command
from qhelpers import put
from sqlalchemy import text, update
from test_migrations import schema_differences

from pvoq.quarantine.migrate import alembic_config, current, head
from pvoq.quarantine.schema import HELD_BYTES, held_counts, make_engine
from pvoq.quarantine.settings import DAY, RELEASE, QuarantineSettings, merge_settings
from pvoq.quarantine.store import RELEASED, QuarantineStore
from pvoq.testing.pgserver import PostgresServer

TWO_GIB = 2**31
SETTINGS = merge_settings([QuarantineSettings("HR", 14 * DAY, RELEASE, False)])


def fresh_database(server: PostgresServer) -> str:
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


class TestSixtyFourBitCounters:
    def test_held_bytes_cross_two_gib(self, postgres: PostgresServer, tmp_path: Path) -> None:
        """Storing goes on once the quarantines hold more than 2^31 bytes, counted right."""
        store = QuarantineStore(fresh_database(postgres), tmp_path / "bodies")
        try:
            first = put(store, 1, "Policy")
            size = store.used_bytes()
            with store.engine.begin() as conn:   # as if 2 GiB of mail were held already
                conn.execute(update(held_counts).where(held_counts.c.quarantine == HELD_BYTES)
                             .values(n=TWO_GIB - 1))
            put(store, 2, "Policy")
            put(store, 3, "Virus")
            assert store.used_bytes() == TWO_GIB - 1 + 2 * size > TWO_GIB
            assert store.held_count() == 3
            assert store.act(first, RELEASED).settled == RELEASED
            assert store.used_bytes() == TWO_GIB - 1 + size
        finally:
            store.close()

    def test_mids_and_origin_mids_past_two_to_the_31(self, postgres: PostgresServer,
                                                    tmp_path: Path) -> None:
        """MIDs, gateway MIDs and audit sequence numbers are 64-bit."""
        store = QuarantineStore(fresh_database(postgres), tmp_path / "bodies")
        try:
            mid = 2**40 + 1
            raw_meta_mid = 2**35
            put(store, mid, "Policy")
            with store.engine.begin() as conn:
                conn.execute(text("UPDATE messages SET origin_mid = :m"), {"m": raw_meta_mid})
                conn.execute(text("UPDATE audit_head SET seq = :s"), {"s": 2**33})
            row = store.get(mid)
            assert row is not None and row["origin_mid"] == raw_meta_mid
            assert store.act(mid, RELEASED).settled == RELEASED
        finally:
            store.close()

    def test_database_at_0002_is_widened(self, postgres: PostgresServer) -> None:
        """A PostgreSQL database of the previous release gets bigint columns and sequence."""
        url = fresh_database(postgres)
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), "0002")
            assert any(d[0][0] == "modify_type" for d in schema_differences(url)
                       if isinstance(d, list))
            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), "head")
            assert schema_differences(url) == []
            with engine.connect() as conn:
                kinds = dict(conn.execute(text(
                    "SELECT table_name || '.' || column_name, data_type "
                    "FROM information_schema.columns WHERE table_schema = 'public' "
                    "AND data_type IN ('integer', 'bigint')")).all())
                seq = conn.execute(text("SELECT data_type FROM information_schema.sequences "
                                        "WHERE sequence_name = 'reasons_id_seq'")).scalar()
            assert kinds["held_counts.n"] == kinds["messages.size"] == "bigint"
            assert sorted(k for k, v in kinds.items() if v == "integer") == [
                "attachments.n", "audit_head.id"]
            assert seq == "bigint"
        finally:
            engine.dispose()


class TestManagersStartedAtOnce:
    def test_fresh_database(self, postgres: PostgresServer, tmp_path: Path) -> None:
        """Managers opening one fresh database together all come up, at the head revision,
        with the configured quarantines recorded once."""
        for attempt in range(3):
            url = fresh_database(postgres)
            ready, synced = threading.Barrier(3), threading.Barrier(3)
            opened: list[QuarantineStore] = []
            errors: list[BaseException] = []

            def start(n: int, url: str = url, ready: threading.Barrier = ready,
                      synced: threading.Barrier = synced,
                      opened: list[QuarantineStore] = opened,
                      errors: list[BaseException] = errors, attempt: int = attempt) -> None:
                ready.wait(timeout=30)
                try:
                    store = QuarantineStore(url, tmp_path / f"bodies{attempt}-{n}",
                                           node=f"manager-{n}")
                    opened.append(store)
                    synced.wait(timeout=60)
                    assert store.sync_quarantines(SETTINGS) == []   # as a manager starts
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=start, args=(n,), daemon=True) for n in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            try:
                assert not any(t.is_alive() for t in threads)
                assert errors == [], f"attempt {attempt}: {errors!r}"
                assert len(opened) == 3
                assert current(opened[0].engine) == head()
                for n, store in enumerate(opened, start=1):
                    put(store, n, "Policy" if n % 2 else "HR")
                assert opened[0].held_count() == 3
                assert opened[0].counts() == {"Policy": (2, ANY), "HR": (1, ANY)}
                assert opened[0].held_count("HR") == 1
            finally:
                for store in opened:
                    store.close()
            assert schema_differences(url) == []
