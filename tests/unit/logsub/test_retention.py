"""Retention of the log subscription's data: the index forgets old messages and connection
lines (`TrackingIndex.prune`), old rolled copies are deleted (pvoq.logsub.retention)."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from pvoq.logsub.index import GATEWAY, TrackingIndex
from pvoq.logsub.reader import Position
from pvoq.logsub.retention import cutoff, delete_old_copies, recover_rolled, roll_copy
from pvoq.maillog.writer import format_line

DAY = 86400.0
NOW = 1_796_000_000.0   # Nov 2026


def _message(mid: int, when: float, *, later: float | None = None) -> list[str]:
    lines = [format_line(text, epoch=when).rstrip("\n") for text in (
        f"Start MID {mid} ICID {mid}",
        f"MID {mid} ICID {mid} From: <alice{mid}@sender.example>",
        f"MID {mid} ICID {mid} RID 0 To: <bob{mid}@example.com>",
        f'MID {mid} Subject "quarterly numbers {mid}"',
        f"New SMTP ICID {mid} interface Incoming Mail (10.0.0.2) address 192.0.2.7")]
    if later is not None:
        lines.append(format_line(f"MID {mid} released from quarantine", epoch=later).rstrip())
    return lines


def _counts(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("messages", "recipients", "events", "conns", "tokens")}
    finally:
        db.close()


def test_prune_forgets_old_messages_whole_and_keeps_recent_ones(tmp_path: Path) -> None:
    index = TrackingIndex(tmp_path / "tracking.db")
    source = index.source("gw1.example.com", GATEWAY)
    lines = (_message(1, NOW - 40 * DAY) + _message(2, NOW - 35 * DAY)
             + _message(3, NOW - 40 * DAY, later=NOW - DAY)   # quarantined long, released now
             + _message(4, NOW - 2 * DAY))
    index.add(source, lines, position=Position(1, 100, "h"), stored=100, pulled_at=NOW)
    before = _counts(index.path)

    pruned = index.prune(NOW - 30 * DAY, batch=1)   # batches of one: the loop goes on
    assert (pruned.messages, pruned.conns) == (2, 3)   # connection lines go by their time
    after = _counts(index.path)
    assert after["messages"] == before["messages"] - 2 == 2
    assert after["recipients"] == 2 and after["events"] == before["events"] - 8
    assert after["conns"] == 1
    with index.reading() as db:
        kept = {mid for (mid,) in db.execute("SELECT mid FROM messages")}
        tokens = {mid for (mid,) in db.execute("SELECT DISTINCT mid FROM tokens")}
    assert kept == tokens == {3, 4}
    assert index.prune(NOW - 30 * DAY) == pruned.__class__(0, 0)   # nothing left to do
    index.close()


def test_a_rolled_copy_is_found_again_after_a_crash_before_the_index_knew(
        tmp_path: Path) -> None:
    copy = tmp_path / "gateway_logs" / "gw1" / "mail_logs"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(b"x" * 50)
    rolled = roll_copy(copy, NOW)
    assert not copy.exists() and rolled.name == "mail_logs.@" + _stamp(NOW) + ".s"
    assert recover_rolled(copy, 50) == rolled       # the index still covers its 50 bytes
    assert recover_rolled(copy, 49) is None         # not that file: nothing is assumed
    copy.write_bytes(b"")
    assert recover_rolled(copy, 50) is None         # the new copy exists: no crash there


def test_old_rolled_copies_are_deleted_never_the_current_one(tmp_path: Path) -> None:
    copy = tmp_path / "mail_logs"
    old = tmp_path / "mail_logs.@20261001T000000.s"
    recent = tmp_path / "mail_logs.@20261129T000000.s"
    for path, age in ((old, 40 * DAY), (recent, DAY), (copy, 50 * DAY)):
        path.write_text("line\n")
        os.utime(path, (NOW - age, NOW - age))
    assert delete_old_copies(copy, NOW - 30 * DAY) == [old]
    assert recent.exists() and copy.exists()


def test_retention_zero_keeps_everything() -> None:
    assert cutoff(0, NOW) is None
    assert cutoff(30, NOW) == NOW - 30 * DAY


def _stamp(when: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(when))
