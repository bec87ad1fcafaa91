"""`grep` and `tail` over mail_logs, as the AsyncOS CLI offers them.

Pure functions over lines plus a small file follower; they read the log
files and never write them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

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


def tail(path: Path, count: int) -> list[str]:
    lines: list[str] = []
    for line in log_lines(path):
        lines.append(line)
        if len(lines) > count:
            lines.pop(0)
    return lines


def follow(path: Path, *, poll_s: float = 0.2, stop_after_s: float | None = None
           ) -> Iterator[str]:
    """New lines as they are written (like `tail -f`); bounded by *stop_after_s* if given.

    The file is opened and its end noted at once, not at the first `next()`.
    """
    f = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed by the generator)
    f.seek(0, 2)
    deadline = None if stop_after_s is None else time.monotonic() + stop_after_s

    def lines() -> Iterator[str]:
        partial = ""
        with f:
            while deadline is None or time.monotonic() < deadline:
                chunk = f.readline()
                if not chunk:
                    time.sleep(poll_s)
                    continue
                partial += chunk
                if partial.endswith("\n"):
                    yield partial.rstrip("\n")
                    partial = ""
    return lines()
