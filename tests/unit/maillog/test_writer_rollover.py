"""Tests for MailLog's rollover: by size, by time, on demand, after an outside rename (SIGHUP),
the markers, the retention, the level and the file modes."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvoq.maillog import writer
from pvoq.maillog.rollover import log_files, rolled_files
from pvoq.maillog.settings import LogSettings
from pvoq.maillog.writer import BEGIN, ROLLED_OVER, MailLog


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def texts(path: Path) -> list[str]:
    """The lines of *path* without their time stamp and level."""
    return [line.split(": ", 1)[1] for line in lines_of(path)]


@pytest.fixture
def make_log(tmp_path: Path) -> Iterator[type[MailLog]]:
    made: list[MailLog] = []

    class Made(MailLog):
        def __init__(self, settings: LogSettings | None = None) -> None:
            super().__init__(tmp_path / "logs", appliance="gateway gw1", serial="SN1",
                             settings=settings)
            made.append(self)

    yield Made
    for log in made:
        log.close()


def payload_lines(directory: Path) -> list[str]:
    """Every `line N` written, across all the files of mail_logs, in order."""
    found = []
    for path in log_files(directory, "mail_logs"):
        found += [t for t in texts(path) if t.startswith("line ")]
    return found


class TestRolloverBySize:
    def test_rolls_when_the_size_is_reached_with_markers(self, make_log: type[MailLog]) -> None:
        """Each rolled file begins with `Begin Logfile` and ends with `Logfile rolled over`."""
        log = make_log(LogSettings(max_file_size=2048, max_files=100))
        for n in range(200):
            log.info(f"line {n} " + "x" * 40)
        log.flush()
        rolled = rolled_files(log.directory, "mail_logs")
        assert len(rolled) >= 3
        for path in rolled:
            found = texts(path)
            assert found[0] == BEGIN
            assert found[1].startswith("Version: pvoq ") and found[1].endswith(" SN: SN1")
            assert found[-1] == ROLLED_OVER
            assert path.stat().st_size < 2048 + 200  # rolls as soon as a write crosses it
        assert texts(log.path)[0] == BEGIN
        assert payload_lines(log.directory) == [f"line {n} " + "x" * 40 for n in range(200)]

    def test_a_file_grown_from_outside_is_rolled_within_a_size_check(
            self, make_log: type[MailLog], monkeypatch: pytest.MonkeyPatch) -> None:
        """The writer counts what it writes, and asks the system for the size at least
        every SIZE_CHECK_S: octets appended by another writer count too."""
        log = make_log(LogSettings(max_file_size=4096, max_files=100))
        log.info("line 0")
        log.flush()
        with open(log.path, "ab") as other:
            other.write(b"x" * 5000 + b"\n")
        log.info("line 1")
        log.flush()
        later = time.time() + writer.SIZE_CHECK_S + 1
        monkeypatch.setattr(writer.time, "time", lambda: later)
        log.info("line 2")
        log.flush()
        rolled = rolled_files(log.directory, "mail_logs")
        assert len(rolled) == 1
        assert [x.rsplit(": ", 1)[1] for x in lines_of(rolled[0]) if "Info: line " in x] == [
            "line 0", "line 1", "line 2"]
        assert not any("Info: line " in x for x in lines_of(log.path))

    def test_rollover_is_a_rename_the_inode_moves(self, make_log: type[MailLog]) -> None:
        """The subscription's contract: the rolled file is the same inode as the old current."""
        log = make_log()
        log.info("line 0")
        before = os.stat(log.path).st_ino
        name = log.rollover_now()
        assert name is not None and name.startswith("mail_logs.@") and name.endswith(".s")
        assert os.stat(log.directory / name).st_ino == before
        assert os.stat(log.path).st_ino != before

    def test_retention_keeps_the_newest_files(self, make_log: type[MailLog]) -> None:
        log = make_log(LogSettings(max_files=3))
        names = []
        for n in range(6):
            log.info(f"line {n}")
            names.append(log.rollover_now())
        kept = [p.name for p in rolled_files(log.directory, "mail_logs")]
        assert kept == names[-3:]
        assert payload_lines(log.directory) == ["line 3", "line 4", "line 5"]

    def test_two_rollovers_in_one_second_do_not_collide(self, make_log: type[MailLog]) -> None:
        log = make_log()
        names = [log.rollover_now() for _ in range(3)]
        assert len(set(names)) == 3
        assert [p.name for p in rolled_files(log.directory, "mail_logs")] == names


class TestRolloverByTime:
    def test_interval_rolls_even_when_nothing_is_logged(self, make_log: type[MailLog]) -> None:
        log = make_log(LogSettings(rollover_interval_seconds=0.5, max_files=1000))
        log.info("line 0")
        deadline = time.monotonic() + 30
        while not rolled_files(log.directory, "mail_logs") and time.monotonic() < deadline:
            time.sleep(0.05)
        rolled = rolled_files(log.directory, "mail_logs")
        assert rolled, "no rollover by time"
        assert texts(rolled[0])[-1] == ROLLED_OVER
        assert payload_lines(log.directory) == ["line 0"]

    def test_no_interval_no_rollover_by_time(self, make_log: type[MailLog]) -> None:
        log = make_log(LogSettings(rollover_interval_seconds=0))
        log.info("line 0")
        log.flush()
        assert rolled_files(log.directory, "mail_logs") == []

    def test_interval_counts_from_the_first_line_of_an_existing_file(
            self, tmp_path: Path, make_log: type[MailLog]) -> None:
        """A restart does not restart the clock: the file's `Begin Logfile` time counts."""
        logs = tmp_path / "logs"
        logs.mkdir()
        (logs / "mail_logs").write_text("Mon Jan 5 10:00:00 2015 Info: Begin Logfile\n")
        log = make_log(LogSettings(rollover_interval_seconds=3600))
        log.flush()
        rolled = rolled_files(logs, "mail_logs")
        assert len(rolled) == 1
        assert texts(rolled[0])[0] == BEGIN and texts(rolled[0])[-1] == ROLLED_OVER


class TestReopen:
    def test_outside_rename_then_reopen_begins_a_new_file(self, make_log: type[MailLog]) -> None:
        """logrotate: `mv mail_logs mail_logs.1; kill -HUP` leaves mail_logs.1 complete and
        a new mail_logs; no line lost or written twice."""
        log = make_log()
        log.info("line 0")
        moved = log.directory / "mail_logs.1"
        os.rename(log.path, moved)
        log.info("line 1")  # before the signal: still into the moved file
        assert log.reopen() is True
        log.info("line 2")
        log.flush()
        assert texts(moved)[-1] == ROLLED_OVER
        assert [t for t in texts(moved) if t.startswith("line ")] == ["line 0", "line 1"]
        assert texts(log.path)[0] == BEGIN
        assert [t for t in texts(log.path) if t.startswith("line ")] == ["line 2"]

    def test_reopen_without_a_rename_changes_nothing(self, make_log: type[MailLog]) -> None:
        log = make_log()
        inode = os.stat(log.path).st_ino
        assert log.reopen() is False
        log.info("line 0")
        log.flush()
        assert os.stat(log.path).st_ino == inode
        assert ROLLED_OVER not in texts(log.path)

    def test_rollover_after_an_outside_rename_does_not_rename_a_stranger(
            self, make_log: type[MailLog]) -> None:
        """The file at `mail_logs` is not the one held open: it is not renamed as ours."""
        log = make_log()
        os.rename(log.path, log.directory / "elsewhere")
        assert log.rollover_now() is None
        assert rolled_files(log.directory, "mail_logs") == []
        assert texts(log.path)[0] == BEGIN
        assert texts(log.directory / "elsewhere")[-1] == ROLLED_OVER


class TestConcurrency:
    def test_every_line_once_while_threads_log_and_roll(self, make_log: type[MailLog]) -> None:
        log = make_log(LogSettings(max_file_size=4096, max_files=10_000))
        errors: list[BaseException] = []

        def writer(k: int) -> None:
            try:
                for n in range(300):
                    log.info(f"line {k}-{n}")
            except BaseException as exc:
                errors.append(exc)

        def roller() -> None:
            for _ in range(20):
                log.rollover_now()

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        threads.append(threading.Thread(target=roller))
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        log.flush()
        assert errors == []
        found = payload_lines(log.directory)
        assert sorted(found) == sorted(f"line {k}-{n}" for k in range(4) for n in range(300))
        for k in range(4):  # each writer's lines in its order
            mine = [x for x in found if x.startswith(f"line {k}-")]
            assert mine == [f"line {k}-{n}" for n in range(300)]


class TestFailures:
    def test_a_refused_rename_keeps_the_log_going(self, make_log: type[MailLog],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        log = make_log(LogSettings(max_file_size=1024))

        def refuse(src: object, dst: object) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(os, "rename", refuse)
        for n in range(100):
            log.info(f"line {n}")
        log.flush()
        monkeypatch.undo()
        found = texts(log.path)
        warnings = [t for t in found if t.startswith("Logfile rollover failed")]
        assert len(warnings) == 1  # retried later, not on every write
        assert [t for t in found if t.startswith("line ")] == [f"line {n}" for n in range(100)]
        with pytest.raises(PermissionError):
            monkeypatch.setattr(os, "rename", refuse)
            log.rollover_now()
        monkeypatch.undo()
        log.info("after")
        log.flush()
        assert texts(log.path)[-1] == "after"


class TestLevelAndModes:
    def test_level_keeps_lines_up_to_it(self, make_log: type[MailLog]) -> None:
        log = make_log(LogSettings(level="Warning"))
        log.info("line info")
        log.warning("line warning")
        log.critical("line critical")
        log.log("line debug", level="Debug")
        log.flush()
        assert payload_lines(log.directory) == ["line warning", "line critical"]
        log.configure(LogSettings(level="Debug"))
        log.log("line debug", level="Debug")
        log.flush()
        assert payload_lines(log.directory)[-1] == "line debug"

    def test_new_and_rolled_files_are_0640_in_a_0750_directory(
            self, make_log: type[MailLog]) -> None:
        old = os.umask(0)
        try:
            log = make_log()
            log.info("line 0")
            log.rollover_now()
            log.info("line 1")
            log.flush()
        finally:
            os.umask(old)
        assert stat.S_IMODE(os.stat(log.directory).st_mode) == 0o750
        for path in log_files(log.directory, "mail_logs"):
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o640, path.name
