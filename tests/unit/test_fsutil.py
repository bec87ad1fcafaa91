"""Tests for pvoq.fsutil: write-fsync-rename and leftover cleanup."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pvoq.fsutil import TMP_SUFFIX, atomic_write, remove_durably, remove_leftovers


class TestAtomicWrite:
    def test_creates_file(self, tmp_path: Path) -> None:
        """A new file gets exactly the data written."""
        target = tmp_path / "entry.json"
        atomic_write(target, b'{"mid": 1}')
        assert target.read_bytes() == b'{"mid": 1}'

    def test_replaces_content(self, tmp_path: Path) -> None:
        """Writing over an existing file replaces its whole content, even with shorter data."""
        target = tmp_path / "entry.json"
        atomic_write(target, b"a much longer first version")
        atomic_write(target, b"short")
        assert target.read_bytes() == b"short"

    def test_leaves_no_temporary_file(self, tmp_path: Path) -> None:
        """After a write only the final file is in the directory."""
        atomic_write(tmp_path / "a.eml", b"x" * 100_000)
        atomic_write(tmp_path / "a.eml", b"y", sync_dir=False)
        assert [p.name for p in tmp_path.iterdir()] == ["a.eml"]

    def test_mode_is_applied_to_new_file(self, tmp_path: Path) -> None:
        """The mode given is the new file's permission (key files use 0600)."""
        target = tmp_path / "key.pem"
        atomic_write(target, b"secret", mode=0o600)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600

    def test_empty_data(self, tmp_path: Path) -> None:
        """Empty data yields an empty file."""
        target = tmp_path / "empty"
        atomic_write(target, b"")
        assert target.exists() and target.read_bytes() == b""


class TestRemoveDurably:
    def test_removes_file(self, tmp_path: Path) -> None:
        """An existing file is unlinked."""
        target = tmp_path / "1.eml"
        target.write_bytes(b"x")
        remove_durably(target)
        assert not target.exists()

    def test_missing_file_is_fine(self, tmp_path: Path) -> None:
        """Removing a file that is not there raises nothing."""
        remove_durably(tmp_path / "absent.eml")
        assert list(tmp_path.iterdir()) == []


class TestRemoveLeftovers:
    def test_removes_only_tmp_files(self, tmp_path: Path) -> None:
        """Only `*.tmp` files are deleted, and their number is returned."""
        keep = ["1.eml", "1.json", "tmp.json", "notes.tmpx"]
        drop = [f".1.json.123{TMP_SUFFIX}", f"2.eml{TMP_SUFFIX}"]
        for name in keep + drop:
            (tmp_path / name).write_bytes(b"x")
        assert remove_leftovers(tmp_path) == len(drop)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)

    def test_directories_are_kept(self, tmp_path: Path) -> None:
        """A directory whose name ends in `.tmp` is not touched."""
        (tmp_path / f"work{TMP_SUFFIX}").mkdir()
        assert remove_leftovers(tmp_path) == 0
        assert (tmp_path / f"work{TMP_SUFFIX}").is_dir()

    def test_missing_directory(self, tmp_path: Path) -> None:
        """A directory that does not exist has no leftovers."""
        assert remove_leftovers(tmp_path / "nope") == 0

    def test_crashed_atomic_write_is_cleaned(self, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
        """The temporary file of a write that died before its rename is a leftover."""

        def crash(src: object, dst: object) -> None:
            raise OSError("power lost")

        monkeypatch.setattr(os, "replace", crash)
        target = tmp_path / "1.json"
        with pytest.raises(OSError, match="power lost"):
            atomic_write(target, b"new")
        monkeypatch.undo()
        assert not target.exists()
        assert remove_leftovers(tmp_path) == 1
        assert list(tmp_path.iterdir()) == []
