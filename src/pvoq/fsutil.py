"""Durable file operations and file modes: the only way pvoq changes a file that matters.

Everything that must survive a crash is written to a temporary file in the
same directory, fsync'd, renamed over its final name, and the directory is
fsync'd so the rename itself is durable. A reader therefore sees the old
content or the new content, never half of it. A write that fails (a full
disk, an interrupt) removes its temporary file before the error goes on;
`*.tmp` files a crash left behind are removed on start (`remove_leftovers`,
`sweep_leftovers`).

Modes: pvoq creates files 0640 and directories 0750 (keys and secrets 0600)
whatever umask the process inherited: `restrict_umask` makes the process
umask at least `UMASK` (so that what other libraries create, such as SQLite's
`-wal`/`-shm`, complies too), `make_dir` and `atomic_write` give explicit
modes (a file's mode is an upper bound the umask cannot widen), and
`prepare_tree` takes group write and every access by others away from what
an earlier, looser run left, in the same walk that removes leftovers.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

TMP_SUFFIX = ".tmp"
FILE_MODE = 0o640     # every file pvoq creates, unless it is a secret
SECRET_MODE = 0o600   # private keys, tokens, pinned keys
DIR_MODE = 0o750      # every directory pvoq creates
UMASK = 0o027         # the least the process umask takes away: group write, all of others
LIVE_WRITE_S = 3600.0  # a temporary file of a running process older than this is a leftover


def restrict_umask() -> int:
    """Make the process umask take away at least `UMASK` (a stricter one is kept);
    return the umask it had."""
    old = os.umask(UMASK)
    os.umask(old | UMASK)
    return old


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: Path, mode: int = DIR_MODE) -> Path:
    """Create *path* and any missing parent with *mode* (whatever the umask); return it.

    A directory that exists is left as it is (`tighten_tree` deals with loose ones).
    """
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs to set
        os.chmod(directory, mode)  # mkdir's mode went through the umask
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    return path


def temp_name(path: Path) -> Path:
    """The temporary file `atomic_write` writes *path*'s new content to."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


def atomic_write(path: Path, data: bytes, *, sync_dir: bool = True,
                 mode: int = FILE_MODE) -> None:
    """Write *data* to *path* so that a crash leaves the old file or the new one.

    The file gets at most *mode*, whatever the umask (a umask may take more
    away). If anything fails before the rename (a full disk, an interrupt),
    the temporary file is removed and the error goes on: a failed write
    leaves the old file and nothing else.
    """
    path = Path(path)
    tmp = temp_name(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a dead process's with our PID: its mode is not ours to keep
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
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


def _writer_alive(path: str, name: str) -> bool:
    """True when *name* (`.<file>.<pid>.tmp`) may be another running process's write.

    Its PID names a process that runs now (not this one: whoever sweeps does so before
    writing there itself; in a container the same PID comes back at every start), and
    the file changed within `LIVE_WRITE_S` (a PID reused after a restart does not keep
    a leftover for ever).
    """
    pid_text = name[:-len(TMP_SUFFIX)].rpartition(".")[2]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid() or pid <= 1:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        pass  # another user's process
    try:
        return time.time() - os.stat(path, follow_symlinks=False).st_mtime < LIVE_WRITE_S
    except FileNotFoundError:
        return False


def _ours(name: str) -> bool:
    """True for a name `temp_name` gives: `.<file>.<pid>.tmp`."""
    return name.startswith(".") and name[:-len(TMP_SUFFIX)].rpartition(".")[2].isdigit()


def remove_leftovers(directory: Path, *, ours_only: bool = False) -> int:
    """Delete the temporary files a crash left in *directory*; return how many.

    A temporary file named after a process that still runs (another pvoq
    command writing at this moment) is left to it. *ours_only*: only the names
    `atomic_write` gives (for directories pvoq shares, such as the configuration's).
    """
    count = 0
    if not Path(directory).is_dir():
        return 0
    for entry in os.scandir(directory):
        if (entry.name.endswith(TMP_SUFFIX) and entry.is_file(follow_symlinks=False)
                and (not ours_only or _ours(entry.name))
                and not _writer_alive(entry.path, entry.name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
            count += 1
    return count


@dataclass
class Tightened:
    """What a walk of a tree did: modes it tightened (`(path, old mode, new mode)`), the
    ones it could not (`(path, why)`), temporary files it removed (per directory relative
    to the root, `.` for the root itself)."""

    changed: list[tuple[str, int, int]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)


def prepare_tree(root: Path, *, tighten: bool = True, sweep: bool = True,
                 trusted: Collection[str] = (), mask: int = UMASK) -> Tightened:
    """One walk of *root* at start: take *mask*'s bits (group write, every access by others)
    away from every directory and file that has them, and remove the temporary files
    interrupted writes left (`remove_leftovers`' rule). Symlinks are neither followed
    nor changed.

    *trusted*: directories (relative to *root*) whose files only `atomic_write` creates,
    so never looser than its mode: their files are not `stat`ed one by one (a manager's
    `quarantine/bodies` may hold millions); the directories themselves are checked.
    """
    result = Tightened()
    root = Path(root)
    skip = {os.path.normpath(root / t) for t in trusted}

    def tighten_one(path: str, mode: int) -> None:
        loose = stat.S_IMODE(mode)
        if loose & mask:
            try:
                os.chmod(path, loose & ~mask)  # never a symlink: they are skipped
            except OSError as exc:
                result.failed.append((path, exc.strerror or str(exc)))
            else:
                result.changed.append((path, loose, loose & ~mask))

    try:
        root_mode = os.stat(root).st_mode
    except FileNotFoundError:
        return result
    if not stat.S_ISDIR(root_mode):
        return result
    if tighten:
        tighten_one(str(root), root_mode)
    stack = [str(root)]
    while stack:
        directory = stack.pop()
        check_files = tighten and os.path.normpath(directory) not in skip
        removed = 0
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    if tighten:
                        tighten_one(entry.path, entry.stat(follow_symlinks=False).st_mode)
                elif not entry.is_file(follow_symlinks=False):
                    if check_files and not entry.is_symlink():  # a socket, a FIFO
                        tighten_one(entry.path, entry.stat(follow_symlinks=False).st_mode)
                elif (sweep and entry.name.endswith(TMP_SUFFIX)
                        and not _writer_alive(entry.path, entry.name)):
                    os.unlink(entry.path)
                    removed += 1
                elif check_files:
                    tighten_one(entry.path, entry.stat(follow_symlinks=False).st_mode)
            except FileNotFoundError:
                continue  # gone meanwhile
        if removed:
            result.removed[os.path.relpath(directory, root)] = removed
    return result


def sweep_leftovers(root: Path) -> dict[str, int]:
    """Delete the temporary files a crash left anywhere under *root*.

    Returns how many were removed per directory (relative to *root*, `.` for
    itself), for one log line.
    """
    return prepare_tree(root, tighten=False).removed


def tighten_tree(root: Path, *, trusted: Collection[str] = (), mask: int = UMASK) -> Tightened:
    """Take the bits of *mask* (group write, every access by others) away from *root* and
    everything under it (see `prepare_tree`)."""
    return prepare_tree(root, sweep=False, trusted=trusted, mask=mask)
