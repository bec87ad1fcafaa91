"""Reading mail_logs in chunks across rollovers (files renamed by the test, as a rollover does)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pvoq.logsub.reader import Chunk, Position, log_files, parse_head, read_chunk


def _write(path: Path, *lines: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def _drain(directory: Path, position: Position, *, max_bytes: int = 1 << 20,
           max_lines: int = 1000, rounds: int = 100) -> tuple[list[str], Position]:
    """Every line after *position*, chunk after chunk (bounded)."""
    out: list[str] = []
    for _ in range(rounds):
        chunk = read_chunk(directory, position, max_bytes=max_bytes, max_lines=max_lines)
        out += _lines(chunk)
        position = chunk.position
        if not chunk.more:
            return out, position
    raise AssertionError("the reader never caught up")


def _lines(chunk: Chunk) -> list[str]:
    return [line for s in chunk.segments for line in s.data.decode().split("\n")[:-1]]


def _roll(directory: Path, stamp: str) -> Path:
    rolled = directory / f"mail_logs.@{stamp}.s"
    os.rename(directory / "mail_logs", rolled)
    return rolled


class TestChunks:
    def test_only_whole_lines_are_handed_out(self, tmp_path: Path) -> None:
        (tmp_path / "mail_logs").write_bytes(b"one\ntwo\nthr")
        chunk = read_chunk(tmp_path, Position(), max_bytes=4096, max_lines=100)
        assert _lines(chunk) == ["one", "two"] and not chunk.more
        with open(tmp_path / "mail_logs", "ab") as f:
            f.write(b"ee\n")
        following = read_chunk(tmp_path, chunk.position, max_bytes=4096, max_lines=100)
        assert _lines(following) == ["three"]

    def test_limits_bound_a_chunk_and_nothing_repeats(self, tmp_path: Path) -> None:
        _write(tmp_path / "mail_logs", *(f"line {n:04d}" for n in range(100)))
        first = read_chunk(tmp_path, Position(), max_bytes=4096, max_lines=7)
        assert len(_lines(first)) == 7 and first.more
        by_bytes = read_chunk(tmp_path, first.position, max_bytes=25, max_lines=1000)
        assert _lines(by_bytes) == ["line 0007", "line 0008"] and by_bytes.more
        rest, _ = _drain(tmp_path, by_bytes.position, max_bytes=64, max_lines=3)
        assert rest == [f"line {n:04d}" for n in range(9, 100)]

    def test_a_line_longer_than_a_chunk_comes_in_pieces(self, tmp_path: Path) -> None:
        _write(tmp_path / "mail_logs", "x" * 50, "short")
        lines, _ = _drain(tmp_path, Position(), max_bytes=20)
        assert "".join(lines[:3]) == "x" * 50 and lines[-1] == "short"


class TestRollover:
    def test_a_renamed_file_is_read_to_its_end_then_the_new_one(self, tmp_path: Path) -> None:
        _write(tmp_path / "mail_logs", "Begin Logfile 1", "a1", "a2")
        lines, position = _drain(tmp_path, Position())
        assert lines == ["Begin Logfile 1", "a1", "a2"]
        _write(tmp_path / "mail_logs", "a3", "a4")
        _roll(tmp_path, "20261130T120000")
        _write(tmp_path / "mail_logs", "Begin Logfile 2", "b1")
        lines, position = _drain(tmp_path, position)
        assert lines == ["a3", "a4", "Begin Logfile 2", "b1"]
        assert _drain(tmp_path, position)[0] == []

    def test_several_rollovers_between_two_reads(self, tmp_path: Path) -> None:
        expected = []
        _write(tmp_path / "mail_logs", "Begin Logfile 0", "x")
        lines, position = _drain(tmp_path, Position(), max_lines=1)
        expected += ["Begin Logfile 0", "x"]
        for n in range(1, 4):
            stamp = f"20261130T12000{n}"
            _roll(tmp_path, stamp)
            # each rolled file's last write is older than the next file's
            os.utime(tmp_path / f"mail_logs.@{stamp}.s", ns=(n * 10**9, n * 10**9))
            _write(tmp_path / "mail_logs", f"Begin Logfile {n}", f"line {n}")
            expected += [f"Begin Logfile {n}", f"line {n}"]
        more, _ = _drain(tmp_path, position, max_lines=3)
        assert lines + more == expected

    def test_no_move_into_a_new_file_before_it_has_a_whole_line(self, tmp_path: Path) -> None:
        _write(tmp_path / "mail_logs", "Begin Logfile 1", "a1")
        _, position = _drain(tmp_path, Position())
        _roll(tmp_path, "20261130T120000")
        (tmp_path / "mail_logs").write_bytes(b"Begin Log")
        chunk = read_chunk(tmp_path, position, max_bytes=4096, max_lines=10)
        assert chunk.segments == [] and chunk.position == position
        with open(tmp_path / "mail_logs", "ab") as f:
            f.write(b"file 2\n")
        assert _drain(tmp_path, position)[0] == ["Begin Logfile 2"]

    def test_a_rolled_file_cut_short_by_a_crash_ends_with_its_line(self, tmp_path: Path) -> None:
        (tmp_path / "mail_logs").write_bytes(b"Begin Logfile 1\nhalf a li")
        _, position = _drain(tmp_path, Position())
        _roll(tmp_path, "20261130T120000")
        _write(tmp_path / "mail_logs", "Begin Logfile 2")
        assert _drain(tmp_path, position)[0] == ["half a li", "Begin Logfile 2"]

    def test_a_lost_file_is_reported_and_reading_resumes_at_the_oldest(
            self, tmp_path: Path) -> None:
        _write(tmp_path / "mail_logs", "Begin Logfile 1", "a1")
        _, position = _drain(tmp_path, Position())
        _write(tmp_path / "mail_logs", "a2 (lost)")
        _roll(tmp_path, "20261130T120000").unlink()
        _write(tmp_path / "mail_logs", "Begin Logfile 2", "b1")
        chunk = read_chunk(tmp_path, position, max_bytes=4096, max_lines=10)
        assert chunk.gap is not None and "is gone" in chunk.gap
        assert _lines(chunk) == ["Begin Logfile 2", "b1"]

    def test_a_reused_inode_is_not_taken_for_the_old_file(self, tmp_path: Path) -> None:
        _write(tmp_path / "mail_logs", "Begin Logfile 1", "a1")
        _, position = _drain(tmp_path, Position())
        (tmp_path / "mail_logs").unlink()
        _write(tmp_path / "mail_logs", "Begin Logfile 2 with other text", "b1")
        forged = Position((tmp_path / "mail_logs").stat().st_ino, position.offset, position.head)
        chunk = read_chunk(tmp_path, forged, max_bytes=4096, max_lines=10)
        assert chunk.gap is not None
        assert _lines(chunk) == ["Begin Logfile 2 with other text", "b1"]

    def test_files_in_order_current_last(self, tmp_path: Path) -> None:
        for n, name in enumerate(("mail_logs.@20261130T120001.s", "mail_logs.@20261130T120000.s")):
            _write(tmp_path / name, "x")
            os.utime(tmp_path / name, ns=((2 - n) * 10**9, (2 - n) * 10**9))
        _write(tmp_path / "mail_logs", "x")
        _write(tmp_path / "other_logs", "x")
        assert [p.name for p, _ in log_files(tmp_path)] == [
            "mail_logs.@20261130T120000.s", "mail_logs.@20261130T120001.s", "mail_logs"]


def test_head_arguments_are_checked() -> None:
    assert parse_head("-") == "" and parse_head("0af3") == "0af3"
    with pytest.raises(ValueError, match="head"):
        parse_head("../etc")
