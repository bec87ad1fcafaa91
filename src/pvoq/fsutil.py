"""Durable file operations: the only way pvoq changes a file that matters.

Everything that must survive a crash is written to a temporary file in the
same directory, fsync'd, renamed over its final name, and the directory is
fsync'd so the rename itself is durable. A reader therefore sees the old
content or the new content, never half of it; `*.tmp` files are leftovers of
a crash and are removed on start (see `remove_leftovers`).
"""

from __future__ import annotations

import os
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, sync_dir: bool = True, mode: int = 0o640) -> None:
    """Write *data* to *path* so that a crash leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(path.parent)


def remove_durably(path: Path, *, sync_dir: bool = True) -> None:
    """Unlink *path* (missing is fine) and make the unlink durable."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    if sync_dir:
        fsync_dir(Path(path).parent)


def remove_leftovers(directory: Path) -> int:
    """Delete the temporary files a crash left in *directory*; return how many."""
    count = 0
    if not Path(directory).is_dir():
        return 0
    for entry in os.scandir(directory):
        if entry.name.endswith(TMP_SUFFIX) and entry.is_file():
            os.unlink(entry.path)
            count += 1
    return count
