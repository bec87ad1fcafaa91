"""The files of a log: the current one, its rolled files, their names and their retention.

The current file is `<logs>/<name>` (`mail_logs`). A rollover renames it, in
the same directory, to `<name>.@<YYYYMMDDTHHMMSS>.s`, the time of the
rollover in UTC (`mail_logs.@20261130T151045.s`); a second rollover within
the same second gets a counter, `<name>.@<stamp>.2.s`, `.3.s` and so on.
The rename never copies: the file's inode moves with it, so a reader that
holds (inode, offset) finds its file again among the rolled ones and
continues from there to the end, then through the later files in order.
Each file begins with `Begin Logfile`; a file rolled by pvoq ends with
`Logfile rolled over`. Rolled files never change after the rename, except
that the oldest are deleted when there are more than the log's `max_files`.

Pure functions over a directory listing; `maillog.writer` does the renames.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

STAMP = "%Y%m%dT%H%M%S"
_ROLLED = re.compile(r"\.@(\d{8}T\d{6})(?:\.(\d{1,9}))?\.s")


def rolled_name(name: str, when: float, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """The name a rollover of log *name* at *when* (epoch) gives its file, *taken* being the
    names in the directory: after every rolled file of the same second, so that the order
    of the names stays the order of the rollovers (even when the oldest were deleted)."""
    stamp = time.strftime(STAMP, time.gmtime(when))
    counters = [key[1] for key in (rolled_key(name, x) for x in taken)
                if key is not None and key[0] == stamp]
    if not counters:
        return f"{name}.@{stamp}.s"
    return f"{name}.@{stamp}.{max(counters) + 1}.s"


def rolled_key(name: str, filename: str) -> tuple[str, int] | None:
    """The sort key (stamp, counter) of *filename* if it is a rolled file of log *name*."""
    if not filename.startswith(name):
        return None
    found = _ROLLED.fullmatch(filename, len(name))
    if found is None:
        return None
    return found.group(1), int(found.group(2) or 1)


def rolled_files(directory: Path, name: str) -> list[Path]:
    """The rolled files of log *name* in *directory*, oldest first."""
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    keyed = []
    for entry in entries:
        key = rolled_key(name, entry)
        if key is not None:
            keyed.append((key, entry))
    return [Path(directory) / entry for _, entry in sorted(keyed)]


def log_files(directory: Path, name: str) -> list[Path]:
    """Every file of log *name*, in the order its lines were written: the rolled files, oldest
    first, then the current file (if it exists)."""
    files = rolled_files(directory, name)
    current = Path(directory) / name
    if current.exists():
        files.append(current)
    return files


def prune(directory: Path, name: str, keep: int) -> list[Path]:
    """Delete the oldest rolled files of log *name* beyond *keep*; return those deleted."""
    files = rolled_files(directory, name)
    excess = files[:max(0, len(files) - keep)]
    deleted = []
    for path in excess:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        deleted.append(path)
    return deleted
