"""Tests for pvoq.maillog.rollover: rolled file names, their order and their retention."""

from __future__ import annotations

import calendar
import os
from pathlib import Path

from pvoq.maillog.rollover import log_files, prune, rolled_files, rolled_key, rolled_name

# 2026-11-30 15:10:45 UTC
EPOCH = float(calendar.timegm((2026, 11, 30, 15, 10, 45, 0, 0, 0)))


def touch(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_text(name + "\n")


class TestNames:
    def test_name_is_the_rollover_time_in_utc(self) -> None:
        """`mail_logs.@YYYYMMDDTHHMMSS.s`, the time in UTC whatever the local zone."""
        assert rolled_name("mail_logs", EPOCH) == "mail_logs.@20261130T151045.s"

    def test_same_second_gets_a_counter(self) -> None:
        """A second rollover within one second gets `.2.s`, then `.3.s`."""
        first = rolled_name("mail_logs", EPOCH)
        second = rolled_name("mail_logs", EPOCH, {first})
        third = rolled_name("mail_logs", EPOCH, {first, second})
        assert second == "mail_logs.@20261130T151045.2.s"
        assert third == "mail_logs.@20261130T151045.3.s"

    def test_key_reads_back_what_naming_gives(self) -> None:
        assert rolled_key("mail_logs", "mail_logs.@20261130T151045.s") == ("20261130T151045", 1)
        assert rolled_key("mail_logs", "mail_logs.@20261130T151045.12.s") == (
            "20261130T151045", 12)

    def test_other_files_are_not_rolled_files(self) -> None:
        """The current file, logrotate's names, temporary files and another log's files."""
        for name in ("mail_logs", "mail_logs.1", "mail_logs.@2026.s", "mail_logs.@20261130T151045",
                     "mail_logs.@20261130T151045.s.tmp", "mail_logsx.@20261130T151045.s",
                     "other.@20261130T151045.s", "mail_logs.@20261130T151045.x.s"):
            assert rolled_key("mail_logs", name) is None, name


class TestListing:
    def test_rolled_files_in_time_order_then_the_current_one(self, tmp_path: Path) -> None:
        """Counters sort after the plain name of their second, and numerically (2 < 10)."""
        touch(tmp_path, "mail_logs", "mail_logs.1", "mail_logs.@20261130T151046.s",
              "mail_logs.@20261130T151045.10.s", "mail_logs.@20261130T151045.2.s",
              "mail_logs.@20261130T151045.s", "mail_logs.@20251231T235959.s")
        assert [p.name for p in log_files(tmp_path, "mail_logs")] == [
            "mail_logs.@20251231T235959.s", "mail_logs.@20261130T151045.s",
            "mail_logs.@20261130T151045.2.s", "mail_logs.@20261130T151045.10.s",
            "mail_logs.@20261130T151046.s", "mail_logs"]

    def test_no_current_file_lists_the_rolled_ones(self, tmp_path: Path) -> None:
        touch(tmp_path, "mail_logs.@20261130T151045.s")
        assert [p.name for p in log_files(tmp_path, "mail_logs")] == [
            "mail_logs.@20261130T151045.s"]

    def test_missing_directory_lists_nothing(self, tmp_path: Path) -> None:
        assert log_files(tmp_path / "nope", "mail_logs") == []


class TestRetention:
    def test_prune_deletes_the_oldest_beyond_the_count(self, tmp_path: Path) -> None:
        names = [f"mail_logs.@2026113{d}T000000.s" for d in range(5)]
        touch(tmp_path, "mail_logs", "mail_logs.1", *names)
        deleted = prune(tmp_path, "mail_logs", 2)
        assert [p.name for p in deleted] == names[:3]
        assert [p.name for p in rolled_files(tmp_path, "mail_logs")] == names[3:]
        assert sorted(os.listdir(tmp_path)) == sorted(["mail_logs", "mail_logs.1", *names[3:]])

    def test_prune_within_the_count_deletes_nothing(self, tmp_path: Path) -> None:
        touch(tmp_path, "mail_logs.@20261130T000000.s")
        assert prune(tmp_path, "mail_logs", 1) == []
        assert (tmp_path / "mail_logs.@20261130T000000.s").exists()


def test_a_counter_follows_the_highest_of_its_second() -> None:
    """With `.s` deleted by retention and `.2.s` kept, the next one is `.3.s`, not `.s`."""
    assert rolled_name("mail_logs", EPOCH, {"mail_logs.@20261130T151045.2.s"}) == (
        "mail_logs.@20261130T151045.3.s")
