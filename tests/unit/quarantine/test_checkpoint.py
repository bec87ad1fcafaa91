"""The WAL checkpointer (`quarantine.checkpoint`): the log copied back off the commit path."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from pvoq.quarantine.checkpoint import WalCheckpointer

ROWS = 50
ROW = b"x" * 4000


def test_a_poke_copies_the_log_back_into_the_database(tmp_path: Path) -> None:
    """The writer's connection never checkpoints here: after a poke the checkpointer's
    own connection copies the committed pages into the database file."""
    db = tmp_path / "q.db"
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("CREATE TABLE t (x BLOB)")
        for _ in range(ROWS):
            conn.execute("INSERT INTO t VALUES (?)", (ROW,))
        before = db.stat().st_size
        assert before < ROWS * len(ROW)  # the rows are in the log only
        checkpointer = WalCheckpointer(str(db))
        try:
            checkpointer.poke()
            for _ in range(200):  # bounded: 10 s
                if db.stat().st_size >= ROWS * len(ROW):
                    break
                time.sleep(0.05)
        finally:
            checkpointer.close()
        assert db.stat().st_size >= ROWS * len(ROW)
        assert checkpointer.checkpoints >= 1
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (ROWS,)
    finally:
        conn.close()


def test_close_stops_the_thread_without_a_poke(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    sqlite3.connect(db).close()
    checkpointer = WalCheckpointer(str(db))
    checkpointer.close()  # wakes the thread: no waiting out the idle interval
    assert not checkpointer._thread.is_alive()
