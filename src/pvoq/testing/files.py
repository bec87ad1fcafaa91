"""Helpers for tests of files and modes: a PID no process has, loose modes under a tree."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def dead_pid() -> int:
    """A PID no process has now (searched, bounded, near the kernel's maximum)."""
    for pid in range(4_194_000, 4_194_304):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    raise AssertionError("no free PID found")


def loose_paths(root: Path, *, secrets: tuple[str, ...] = ()) -> list[str]:
    """Everything under *root* (itself included) a group could write or others could use,
    and every file named in *secrets* that is not 0600: `path mode` each."""
    found = []
    for path in [Path(root), *Path(root).rglob("*")]:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o027 or (path.name in secrets and mode != 0o600):
            found.append(f"{path} {mode:04o}")
    return found
