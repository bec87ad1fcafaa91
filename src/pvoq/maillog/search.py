"""`grep` and `tail` over mail_logs, as the AsyncOS CLI offers them.

Pure functions over lines plus a small file follower; they read the log
files and never write them. A log is read across its files
(`maillog.rollover.log_files`): the rolled files, oldest first, then the
current one; `follow` goes on into the new current file after a rollover.
"""

from __future__ import annotations

import collections
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

NO_RESULTS = "No results were found"


def grep(lines: Iterable[str], pattern: str, *, ignore_case: bool = False,
         context: int = 0, invert: bool = False) -> Iterator[str]:
    """Lines matching *pattern* (a regex), with *context* lines around each, `--` between runs."""
    regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    buffer: list[str] = []
    after = 0
    last_printed = -1
    for number, line in enumerate(lines):
        hit = bool(regex.search(line)) != invert
        if hit:
            first = number - len(buffer)
            if context and last_printed >= 0 and first > last_printed + 1:
                yield "--"
            yield from buffer
            buffer.clear()
            yield line
            last_printed = number
            after = context
        elif after:
            yield line
            last_printed = number
            after -= 1
        elif context:
            buffer.append(line)
            if len(buffer) > context:
                buffer.pop(0)


def log_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            yield line.rstrip("\n")


def files_lines(paths: Sequence[Path]) -> Iterator[str]:
    """The lines of *paths* in order; a file deleted meanwhile (retention) is skipped."""
    for path in paths:
        try:
            yield from log_lines(path)
        except FileNotFoundError:
            continue


def tail(paths: Path | Sequence[Path], count: int) -> list[str]:
    """The last *count* lines of *paths* (the files of one log, oldest first)."""
    files = [paths] if isinstance(paths, Path) else list(paths)
    found: collections.deque[str] = collections.deque()
    for path in reversed(files):
        try:
            last = collections.deque(log_lines(path), maxlen=count - len(found))
        except FileNotFoundError:
            continue
        found.extendleft(reversed(last))
        if len(found) >= count:
            break
    return list(found)


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _open(path: Path) -> TextIO | None:
    try:
        return open(path, encoding="utf-8", errors="replace")  # the caller closes it
    except FileNotFoundError:
        return None


def follow(path: Path, *, poll_s: float = 0.2, stop_after_s: float | None = None
           ) -> Iterator[str]:
    """New lines as they are written (like `tail -F`); bounded by *stop_after_s* if given.

    The file is opened and its end noted at once, not at the first `next()`. When
    *path* becomes another file (a rollover), the rest of the old one is read, then
    the new one from its beginning; a *path* missing at first (moved away, the
    appliance not yet told) is waited for and read from its beginning.
    """
    held = _open(path)
    if held is not None:
        held.seek(0, 2)
    deadline = None if stop_after_s is None else time.monotonic() + stop_after_s

    def lines() -> Iterator[str]:
        f = held
        partial = ""
        try:
            while deadline is None or time.monotonic() < deadline:
                chunk = f.readline() if f is not None else ""
                if chunk:
                    partial += chunk
                    if partial.endswith("\n"):
                        yield partial.rstrip("\n")
                        partial = ""
                    continue
                now = _inode(path)
                mine = None if f is None else os.fstat(f.fileno())
                if now is not None and (mine is None or now != (mine.st_dev, mine.st_ino)):
                    following = _open(path)
                    if following is None:
                        continue
                    if f is not None:
                        # the old file is complete once renamed: its last lines, then the new
                        for rest in f:
                            partial += rest
                            if partial.endswith("\n"):
                                yield partial.rstrip("\n")
                                partial = ""
                        f.close()
                    f, partial = following, ""
                    continue
                time.sleep(poll_s)
        finally:
            if f is not None:
                f.close()
    return lines()
