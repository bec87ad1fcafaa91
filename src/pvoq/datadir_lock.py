"""One running appliance per data directory: an `fcntl` lock on `<data_dir>/pvoq.lock`.

`hold_data_dir` is taken by `pvoq gateway|manager run` before anything in the data
directory is touched (before the appliance tightens file modes, removes leftovers,
opens its logs, spool or admin socket). A second process on the same directory is
refused with `DataDirInUse`, naming the directory and the PID that holds it (the
holder writes its PID into the file once it has the lock). The lock is the
kernel's: it goes with the process, so a lock file left by a run that was killed
(SIGKILL, a crash, a power cut) never blocks the next start; the file itself stays.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pvoq.errors import OperatorError
from pvoq.fsutil import FILE_MODE, make_dir

LOCK_FILE = "pvoq.lock"


class DataDirInUse(OperatorError):
    """Another process holds the data directory: this appliance does not start."""


@contextlib.contextmanager
def hold_data_dir(data_dir: Path) -> Iterator[Path]:
    """Hold the lock of *data_dir* (created if missing) while the block runs; raise
    `DataDirInUse` if another process holds it. Yields the lock file's path."""
    make_dir(data_dir)
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            pid = f"PID {holder}" if holder.isdigit() else "a process whose PID is not known yet"
            raise DataDirInUse(
                f"data directory {data_dir} is in use by another pvoq process ({pid}, "
                f"holding {path}); stop it first, or give this one another <data_dir>"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock (closing any descriptor of the file does)
