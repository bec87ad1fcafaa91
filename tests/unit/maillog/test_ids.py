"""Tests for pvoq.maillog.ids: persistent, never-reused ICID/MID/DCID counters."""

from __future__ import annotations

import json
from pathlib import Path

from pvoq.maillog.ids import _BLOCK, _WRAP, IdAllocator


class TestIdAllocator:
    def test_ids_increase(self, tmp_path: Path) -> None:
        """Successive IDs of one kind are strictly increasing and positive."""
        ids = IdAllocator(tmp_path / "ids.json")
        got = [ids.next("mid") for _ in range(5)]
        assert got == sorted(set(got))
        assert got[0] >= 1

    def test_restart_never_reuses(self, tmp_path: Path) -> None:
        """After a restart (a new allocator on the same file) every new ID is above all old ones."""
        path = tmp_path / "ids.json"
        first = IdAllocator(path)
        before = [first.next("mid") for _ in range(3)]
        del first  # a crash: nothing is flushed on the way out
        second = IdAllocator(path)
        after = [second.next("mid") for _ in range(3)]
        assert min(after) > max(before)

    def test_restart_after_a_whole_block(self, tmp_path: Path) -> None:
        """IDs handed out past a reserved block are still never reused after a restart."""
        path = tmp_path / "ids.json"
        first = IdAllocator(path)
        before = [first.next("dcid") for _ in range(_BLOCK + 2)]
        after = IdAllocator(path).next("dcid")
        assert after > max(before)

    def test_mark_on_disk_is_ahead(self, tmp_path: Path) -> None:
        """The high-water mark on disk is above every ID handed out."""
        path = tmp_path / "ids.json"
        ids = IdAllocator(path)
        handed = [ids.next("icid") for _ in range(10)]
        assert json.loads(path.read_text())["icid"] > max(handed)

    def test_kinds_are_independent(self, tmp_path: Path) -> None:
        """Drawing IDs of one kind does not advance another kind."""
        busy = IdAllocator(tmp_path / "busy.json")
        for _ in range(7):
            busy.next("mid")
        fresh = IdAllocator(tmp_path / "fresh.json")
        assert [busy.next("icid") for _ in range(3)] == [fresh.next("icid") for _ in range(3)]

    def test_kinds_survive_restart_independently(self, tmp_path: Path) -> None:
        """After a restart each kind continues above its own previous IDs."""
        path = tmp_path / "ids.json"
        ids = IdAllocator(path)
        mids = [ids.next("mid") for _ in range(4)]
        icids = [ids.next("icid") for _ in range(2)]
        again = IdAllocator(path)
        assert again.next("mid") > max(mids)
        assert again.next("icid") > max(icids)

    def test_ids_wrap_below_limit(self, tmp_path: Path) -> None:
        """The counter wraps before 2**31: no ID is ever 2**31 or more."""
        path = tmp_path / "ids.json"
        path.write_text(json.dumps({"mid": _WRAP - 2}))
        ids = IdAllocator(path)
        got = [ids.next("mid") for _ in range(4)]
        assert all(1 <= i < _WRAP for i in got)
        assert got[0] == _WRAP - 2 and got[2] < got[1]

    def test_restart_after_wrap_stays_in_range_and_does_not_reuse(self, tmp_path: Path) -> None:
        """A restart after the counter wrapped neither goes past 2**31 nor reuses an ID."""
        path = tmp_path / "ids.json"
        path.write_text(json.dumps({"mid": _WRAP - 2}))
        first = IdAllocator(path)
        before = [first.next("mid") for _ in range(4)]  # wraps: ..., 2**31-1, 1, 2
        second = IdAllocator(path)
        after = [second.next("mid") for _ in range(3)]
        assert all(1 <= i < _WRAP for i in after), after
        assert not set(before) & set(after), (before, after)
