"""Tests for reading a log across its files: `tail` and `grep` over rolled files, and `follow`
going on into the new file after a rollover."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from pvoq.maillog.rollover import log_files
from pvoq.maillog.search import files_lines, follow, grep, tail


def write(path: Path, *lines: str) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def three_files(directory: Path) -> list[Path]:
    write(directory / "mail_logs.@20261130T100000.s", "a1", "a2")
    write(directory / "mail_logs.@20261130T110000.s", "b1", "b2", "b3")
    write(directory / "mail_logs", "c1")
    return log_files(directory, "mail_logs")


def test_lines_in_the_order_they_were_written(tmp_path: Path) -> None:
    assert list(files_lines(three_files(tmp_path))) == ["a1", "a2", "b1", "b2", "b3", "c1"]


def test_grep_finds_lines_in_rolled_files(tmp_path: Path) -> None:
    assert list(grep(files_lines(three_files(tmp_path)), "^[ab]2")) == ["a2", "b2"]


def test_tail_reaches_back_into_rolled_files(tmp_path: Path) -> None:
    files = three_files(tmp_path)
    assert tail(files, 1) == ["c1"]
    assert tail(files, 3) == ["b2", "b3", "c1"]
    assert tail(files, 50) == ["a1", "a2", "b1", "b2", "b3", "c1"]


def test_tail_right_after_a_rollover(tmp_path: Path) -> None:
    """The current file holds only its header: the lines before are in the rolled file."""
    write(tmp_path / "mail_logs.@20261130T100000.s", "x1", "x2", "Logfile rolled over")
    write(tmp_path / "mail_logs", "Begin Logfile")
    assert tail(log_files(tmp_path, "mail_logs"), 3) == ["x2", "Logfile rolled over",
                                                        "Begin Logfile"]


def test_a_file_deleted_meanwhile_is_skipped(tmp_path: Path) -> None:
    files = three_files(tmp_path)
    files[0].unlink()
    assert list(files_lines(files)) == ["b1", "b2", "b3", "c1"]
    assert tail(files, 10) == ["b1", "b2", "b3", "c1"]


def test_follow_goes_on_into_the_new_file(tmp_path: Path) -> None:
    """After a rename the old file's last lines, then the new file's, each once."""
    current = tmp_path / "mail_logs"
    write(current, "old")
    lines = follow(current, poll_s=0.01, stop_after_s=30)
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in lines:
            seen.append(line)
            if line == "new 2":
                break
        done.set()

    reader = threading.Thread(target=read)
    reader.start()
    with open(current, "a") as f:
        f.write("old 1\n")
    with open(current, "a") as f:
        f.write("old 2\n")
    os.rename(current, tmp_path / "mail_logs.@20261130T100000.s")
    write(current, "new 1", "new 2")
    assert done.wait(30)
    reader.join(5)
    assert seen == ["old 1", "old 2", "new 1", "new 2"]


def test_follow_waits_for_a_missing_file(tmp_path: Path) -> None:
    """Moved away and not yet reopened: the new file is read from its beginning once it is
    there."""
    current = tmp_path / "mail_logs"
    lines = follow(current, poll_s=0.01, stop_after_s=30)
    write(current, "first", "second")
    assert [next(lines), next(lines)] == ["first", "second"]
