"""Tests for pvoq.fsutil: write-fsync-rename, leftover cleanup, file modes."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from pvoq.fsutil import (
    DIR_MODE,
    FILE_MODE,
    SECRET_MODE,
    TMP_SUFFIX,
    atomic_write,
    make_dir,
    remove_durably,
    remove_leftovers,
    restrict_umask,
    sweep_leftovers,
    temp_name,
    tighten_tree,
)
from pvoq.testing.files import dead_pid


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
        drop = [f".1.json.{dead_pid()}{TMP_SUFFIX}", f"2.eml{TMP_SUFFIX}"]
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

    def test_a_crashed_writers_temporary_file_is_removed(self, tmp_path: Path) -> None:
        """What a SIGKILL left (`.<name>.<pid>.tmp` of a dead process) is a leftover."""
        (tmp_path / f".1.json.{dead_pid()}{TMP_SUFFIX}").write_bytes(b"half")
        (tmp_path / "1.json").write_bytes(b"old")
        assert remove_leftovers(tmp_path) == 1
        assert [p.name for p in tmp_path.iterdir()] == ["1.json"]

    def test_a_live_writers_temporary_file_is_kept(self, tmp_path: Path) -> None:
        """Another running process's write in progress is not pulled from under it."""
        live = tmp_path / f".counters.json.{os.getppid()}{TMP_SUFFIX}"
        live.write_bytes(b"being written")
        assert remove_leftovers(tmp_path) == 0
        assert live.exists()

    def test_an_old_temporary_file_of_a_reused_pid_is_removed(self, tmp_path: Path) -> None:
        """A PID that came back after a restart does not keep a leftover for ever."""
        old = tmp_path / f".counters.json.{os.getppid()}{TMP_SUFFIX}"
        old.write_bytes(b"from the run before")
        os.utime(old, (1_000_000, 1_000_000))
        assert remove_leftovers(tmp_path) == 1

    def test_ours_only_keeps_other_programs_tmp_files(self, tmp_path: Path) -> None:
        """Beside the configuration only the names `atomic_write` gives are removed."""
        (tmp_path / f"editor{TMP_SUFFIX}").write_bytes(b"x")
        (tmp_path / f".pvoq.xml.{dead_pid()}{TMP_SUFFIX}").write_bytes(b"x")
        assert remove_leftovers(tmp_path, ours_only=True) == 1
        assert [p.name for p in tmp_path.iterdir()] == [f"editor{TMP_SUFFIX}"]


ENOSPC = OSError(errno.ENOSPC, "No space left on device")


class TestFailedWrite:
    """A write that fails removes its temporary file: a full disk leaves nothing behind."""

    @pytest.mark.parametrize("where", ["write", "fsync", "replace"])
    def test_no_temporary_file_and_old_content_kept(self, tmp_path: Path, where: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        target = tmp_path / "ids.json"
        atomic_write(target, b"old")

        def fail(*args: object) -> None:
            raise ENOSPC

        monkeypatch.setattr(os, where, fail)
        with pytest.raises(OSError) as raised:
            atomic_write(target, b"new" * 10_000)
        monkeypatch.undo()
        assert raised.value.errno == errno.ENOSPC
        assert [p.name for p in tmp_path.iterdir()] == ["ids.json"]
        assert target.read_bytes() == b"old"

    def test_interrupt_mid_write(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Not only OSError: a KeyboardInterrupt mid-write cleans up too, and goes on."""
        real_write = os.write
        calls = []

        def interrupted(fd: int, data: bytes) -> int:
            calls.append(fd)
            if len(calls) > 1:
                raise KeyboardInterrupt
            return real_write(fd, bytes(data)[:10])

        monkeypatch.setattr(os, "write", interrupted)
        with pytest.raises(KeyboardInterrupt):
            atomic_write(tmp_path / "1.eml", b"x" * 100)
        monkeypatch.undo()
        assert list(tmp_path.iterdir()) == []


class TestModes:
    """Files 0640, directories 0750, keys 0600: whatever the umask."""

    def test_file_under_umask_000(self, tmp_path: Path, umask_000: None) -> None:
        atomic_write(tmp_path / "a.eml", b"x")
        atomic_write(tmp_path / "key", b"x", mode=SECRET_MODE)
        assert _mode(tmp_path / "a.eml") == FILE_MODE == 0o640
        assert _mode(tmp_path / "key") == 0o600

    def test_stale_temporary_file_mode_is_not_inherited(self, tmp_path: Path,
                                                        umask_000: None) -> None:
        """A temporary file of the same name left 0666 does not lend its mode."""
        target = tmp_path / "key"
        stale = temp_name(target)
        stale.write_bytes(b"old")
        stale.chmod(0o666)
        atomic_write(target, b"secret", mode=0o600)
        assert _mode(target) == 0o600

    def test_make_dir_under_umask_000(self, tmp_path: Path, umask_000: None) -> None:
        """Every directory created, parents included, is 0750."""
        leaf = make_dir(tmp_path / "a" / "b" / "c")
        for path in (tmp_path / "a", tmp_path / "a" / "b", leaf):
            assert _mode(path) == DIR_MODE == 0o750

    def test_make_dir_keeps_an_existing_directory(self, tmp_path: Path) -> None:
        (tmp_path / "d").mkdir(mode=0o700)
        make_dir(tmp_path / "d")
        assert _mode(tmp_path / "d") == 0o700

    def test_make_dir_refuses_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "f").write_bytes(b"")
        with pytest.raises(NotADirectoryError, match="f is not a directory"):
            make_dir(tmp_path / "f")

    @pytest.mark.parametrize(("inherited", "result"),
                             [(0o000, 0o027), (0o022, 0o027), (0o077, 0o077), (0o002, 0o027)])
    def test_restrict_umask(self, inherited: int, result: int) -> None:
        """The umask takes away at least group write and all of others; stricter is kept."""
        old = os.umask(inherited)
        try:
            assert restrict_umask() == inherited
            assert os.umask(inherited) == result
        finally:
            os.umask(old)


class TestTightenTree:
    def test_loose_modes_are_tightened_and_reported(self, tmp_path: Path) -> None:
        """What an earlier run under umask 000 left: 0777 directories, 0666 files."""
        root = tmp_path / "data"
        (root / "logs").mkdir(parents=True)
        log = root / "logs" / "mail_logs"
        log.write_bytes(b"")
        key = root / "key"
        key.write_bytes(b"")
        outside = tmp_path / "outside"
        outside.write_bytes(b"")
        for path, mode in ((root, 0o777), (root / "logs", 0o777), (log, 0o666),
                           (key, 0o600), (outside, 0o666)):
            path.chmod(mode)
        (root / "link").symlink_to(outside)
        result = tighten_tree(root)
        assert (_mode(root), _mode(root / "logs"), _mode(log), _mode(key)) == (
            0o750, 0o750, 0o640, 0o600)
        assert _mode(outside) == 0o666  # a symlink is not followed
        assert sorted(result.changed) == sorted([
            (str(root), 0o777, 0o750), (str(root / "logs"), 0o777, 0o750),
            (str(log), 0o666, 0o640)])
        assert result.failed == []

    def test_trusted_directory_files_are_not_checked_one_by_one(self, tmp_path: Path) -> None:
        """Files of a directory only atomic_write fills are skipped; the directory is not."""
        bodies = tmp_path / "quarantine" / "bodies"
        bodies.mkdir(parents=True)
        (bodies / "1.eml").write_bytes(b"")
        (bodies / "1.eml").chmod(0o666)
        bodies.chmod(0o777)
        result = tighten_tree(tmp_path, trusted=["quarantine/bodies"])
        assert (_mode(bodies), _mode(bodies / "1.eml")) == (0o750, 0o666)
        assert str(bodies) in [path for path, _, _ in result.changed]

    def test_tight_tree_is_left_alone(self, tmp_path: Path) -> None:
        make_dir(tmp_path / "data" / "spool")
        atomic_write(tmp_path / "data" / "spool" / "x", b"")
        assert tighten_tree(tmp_path / "data").changed == []

    def test_missing_root(self, tmp_path: Path) -> None:
        assert tighten_tree(tmp_path / "absent").changed == []


class TestSweepLeftovers:
    def test_every_directory_below_the_root(self, tmp_path: Path) -> None:
        """Spool, quarantine bodies, keys: temporary files are removed wherever they are."""
        dead = dead_pid()
        planted = [tmp_path / f".ids.json.{dead}{TMP_SUFFIX}",
                   tmp_path / "quarantine" / "bodies" / f".7.eml.{dead}{TMP_SUFFIX}",
                   tmp_path / "quarantine" / "bodies" / f".8.eml.{dead}{TMP_SUFFIX}",
                   tmp_path / "ssh" / f".id_ed25519.{dead}{TMP_SUFFIX}"]
        kept = [tmp_path / "quarantine" / "bodies" / "7.eml", tmp_path / "ssh" / "id_ed25519"]
        for path in planted + kept:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
        assert sweep_leftovers(tmp_path) == {".": 1, "quarantine/bodies": 2, "ssh": 1}
        assert all(p.exists() for p in kept)
        assert not any(p.exists() for p in planted)

    def test_missing_root(self, tmp_path: Path) -> None:
        assert sweep_leftovers(tmp_path / "absent") == {}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)
