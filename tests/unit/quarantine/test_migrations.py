"""Tests for pvoq.quarantine.migrate: Alembic revisions on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from qhelpers import put
from sqlalchemy import Engine, text

from pvoq.quarantine.migrate import alembic_config, current, head, migrate
from pvoq.quarantine.schema import make_engine, metadata
from pvoq.quarantine.search import SearchQuery, TextFilter
from pvoq.quarantine.store import RELEASED, QuarantineStore

EXTRA = ("_trgm", "_nocase", "_lower", "_pattern", "_covering")


def schema_differences(url: str) -> list[Any]:
    """What differs between the database and the schema the code expects."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
    # Trigram and covering (PostgreSQL), NOCASE (SQLite) indexes are outside the metadata,
    # as are the tables of the search indexes (trigram tables, search words) and theirs.
    return [d for d in diffs if not (d[0] == "remove_index" and (
        d[1].name.endswith(EXTRA) or d[1].table.name not in metadata.tables))
            and d[0] != "remove_table"]


def foundation_database(url: str) -> None:
    """A database as the first release left it: revision 0001 and one held message."""
    engine = make_engine(url)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
        meta = {"transfer_id": "t-1", "sender": "alice@example.org",
                "origin": {"hostname": "gw1", "serial": "S", "mid": 7},
                "recipients": [{"rid": 0, "address": "bob@example.com"}],
                "quarantines": [{"name": "Policy", "reason": "content filter:x",
                                 "stage": "content_filters"}]}
        conn.execute(text(
            "INSERT INTO messages (id, transfer_id, origin_host, origin_serial, origin_mid, "
            "origin_ip, sender, recipients, subject, received_at, size, body_path, state, meta) "
            "VALUES (1, 't-1', 'gw1', 'S', 7, '10.0.0.1', 'alice@example.org', :r, 'Old one', "
            "1000.0, 10, '', 'held', :m)"),
            {"r": json.dumps(meta["recipients"]), "m": json.dumps(meta)})
        conn.execute(text(
            "INSERT INTO message_quarantines (message_id, quarantine, reason, stage, "
            "scheduled_exit, state) VALUES (1, 'Policy', 'content filter:x', "
            "'content_filters', 5000.0, 'held')"))
        # Legacy databases have no alembic_version table: they predate migrations.
        conn.execute(text("DROP TABLE alembic_version"))
    engine.dispose()


class TestMigrations:
    def test_fresh_database_is_at_head(self, database_url: str, tmp_path: Path) -> None:
        """A new database gets the current schema and the head revision."""
        store = QuarantineStore(database_url, tmp_path / "bodies")
        try:
            assert current(store.engine) == head() == "0009"
        finally:
            store.close()
        assert schema_differences(database_url) == []

    def test_foundation_database_is_upgraded(self, database_url: str, tmp_path: Path,
                                             make_store: Callable[..., QuarantineStore]) -> None:
        """A database of the first release is upgraded and its messages stay usable."""
        foundation_database(database_url)
        assert schema_differences(database_url) != []
        store = make_store()
        assert current(store.engine) == "0009"
        assert schema_differences(database_url) == []
        rows, total = store.search(SearchQuery(recipient=TextFilter("is", "bob@example.com")))
        assert total == 1 and rows[0]["subject"] == "Old one"
        assert rows[0]["quarantines"][0]["received_at"] == 1000.0
        assert store.act(1, RELEASED).settled == RELEASED

    def test_0006_adds_the_covering_index_on_postgresql(self, database_url: str) -> None:
        """A database at 0005 gets the MID/received index on PostgreSQL, nothing on SQLite."""
        engine = make_engine(database_url)
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), "0005")
            assert migrate(engine) == "0009"
            with engine.connect() as conn:
                if engine.dialect.name == "postgresql":
                    found = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE "
                                              "indexname = 'ix_messages_id_covering'")).all()
                    assert [d for (d,) in found] == [
                        "CREATE INDEX ix_messages_id_covering ON public.messages "
                        "USING btree (id) INCLUDE (received_at)"]
                else:
                    names = conn.execute(text("SELECT name FROM sqlite_master "
                                              "WHERE type = 'index'")).scalars().all()
                    assert "ix_messages_id_covering" not in names
        finally:
            engine.dispose()

    def test_0008_drops_the_two_indexes_no_query_uses(self, database_url: str) -> None:
        """A database at 0007 loses the case-sensitive indexes of the gateway's host and
        the recipient's address; on SQLite the searches by gateway and by recipient use
        the case-insensitive ones, as before."""
        engine = make_engine(database_url)
        unused = {"ix_messages_origin", "ix_recipients_address"}
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), "0007")
            assert unused <= _index_names(engine)
            assert migrate(engine) == "0009"
            assert not unused & _index_names(engine)
            if engine.dialect.name == "sqlite":
                with engine.connect() as conn:
                    for sql, wanted in (
                            ("SELECT id FROM messages WHERE origin_host = 'gw' "
                             "COLLATE NOCASE", "ix_messages_origin_nocase"),
                            ("SELECT message_id FROM message_recipients WHERE address = "
                             "'b@example.com' COLLATE NOCASE", "ix_recipients_address_nocase")):
                        plan = " ".join(str(row[-1]) for row in conn.execute(
                            text("EXPLAIN QUERY PLAN " + sql)))
                        assert wanted in plan
        finally:
            engine.dispose()

    def test_0009_drops_the_trigram_tables_no_search_reads(
            self, database_url: str, make_store: Callable[..., QuarantineStore]) -> None:
        """On SQLite the reasons' and attachment names' trigram tables go (a downgrade
        builds them again from the held messages); the searches by reason and by
        attachment name answer as before. PostgreSQL never had them."""
        store = make_store()
        put(store, 1, ("Policy", "content filter:payroll_rule"), attachment=("pay.xlsx", 10))
        put(store, 2, ("Policy", "content filter:other_rule"))
        lite = store.engine.dialect.name == "sqlite"

        def tables() -> set[str]:
            with store.engine.connect() as conn:
                return set(conn.execute(text(
                    "SELECT name FROM sqlite_master WHERE type = 'table'" if lite else
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())

        def found() -> tuple[list[int], list[int]]:
            by_reason, _ = store.search(SearchQuery(reason=TextFilter("contains", "payroll")))
            by_file, _ = store.search(SearchQuery(
                attachment_name=TextFilter("contains", "pay.x")))
            return [r["id"] for r in by_reason], [r["id"] for r in by_file]

        assert not {"fts_reasons", "fts_attachments"} & tables()
        assert found() == ([1], [1])
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0008")
        if lite:
            with store.engine.connect() as conn:
                assert conn.execute(text("SELECT rowid, reasons FROM fts_reasons "
                                         "ORDER BY rowid")).all() == [
                    (1, "content filter:payroll_rule"), (2, "content filter:other_rule")]
                assert conn.execute(text("SELECT rowid, attachments FROM "
                                         "fts_attachments")).all() == [(1, "pay.xlsx")]
        else:
            assert not {"fts_reasons", "fts_attachments"} & tables()
        assert migrate(store.engine) == "0009"
        assert not {"fts_reasons", "fts_attachments"} & tables()
        assert found() == ([1], [1])

    def test_upgrade_is_idempotent(self, database_url: str) -> None:
        """Running the migration again changes nothing."""
        engine = make_engine(database_url)
        try:
            assert migrate(engine) == migrate(engine) == "0009"
        finally:
            engine.dispose()


def _index_names(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            return set(conn.execute(text("SELECT indexname FROM pg_indexes WHERE "
                                         "schemaname = 'public'")).scalars())
        return set(conn.execute(text("SELECT name FROM sqlite_master "
                                     "WHERE type = 'index'")).scalars())
