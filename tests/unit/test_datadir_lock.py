"""`hold_data_dir`: one holder at a time, the holder's PID in the file, released on exit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pvoq.datadir_lock import DataDirInUse, hold_data_dir


def test_a_second_holder_is_refused_naming_the_directory_and_pid(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with hold_data_dir(data) as lock:  # creates the directory
        assert lock == data / "pvoq.lock"
        assert lock.read_text() == f"{os.getpid()}\n"
        assert lock.stat().st_mode & 0o777 == 0o640
        with pytest.raises(DataDirInUse) as refused, hold_data_dir(data):
            pass
        assert str(refused.value) == (
            f"data directory {data} is in use by another pvoq process (PID {os.getpid()}, "
            f"holding {lock}); stop it first, or give this one another <data_dir>")
        assert lock.read_text() == f"{os.getpid()}\n"  # the refused one wrote nothing
    with hold_data_dir(data):  # released when the block ended
        pass


def test_a_stale_file_does_not_block(tmp_path: Path) -> None:
    (tmp_path / "pvoq.lock").write_text("999999\n")  # left by a run that was killed
    with hold_data_dir(tmp_path) as lock:
        assert lock.read_text() == f"{os.getpid()}\n"
