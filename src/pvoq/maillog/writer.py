"""The mail_logs writer.

Owns the on-disk log `<data>/logs/mail_logs`, one line per event, in the form
administrators of AsyncOS grep every day::

    Fri Sep 13 15:08:02 2013 Info: New SMTP DCID 12345 interface 10.10.20.1 address 10.10.10.1 port 7025

The file starts with `Begin Logfile` and a `Version:` line. Lines are written
and flushed within the event loop's turn that logged them (an operator tails
this file while troubleshooting); they are not fsync'd: the log is evidence,
the spool is the truth.

This module must never decide anything about mail: it only writes lines.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from pathlib import Path
from typing import TextIO

from pvoq import __version__
from pvoq.fsutil import FILE_MODE, UMASK, make_dir

LEVELS = ("Critical", "Warning", "Info", "Debug")


def format_time(epoch: float) -> str:
    """Render *epoch* like AsyncOS: `Mon Apr 1 12:00:00 2014` (day not padded)."""
    return _format_second(int(epoch))


@functools.lru_cache(maxsize=4)
def _format_second(second: int) -> str:
    # A busy appliance logs many lines a second: each second is rendered once.
    t = time.localtime(second)
    return f"{time.strftime('%a %b', t)} {t.tm_mday} {time.strftime('%H:%M:%S %Y', t)}"


def format_line(text: str, *, level: str = "Info", epoch: float | None = None) -> str:
    """One mail_logs line, without the trailing newline."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}")
    when = time.time() if epoch is None else epoch
    # A line must stay one line whatever a peer sent us.
    clean = text.replace("\r", "\\r").replace("\n", "\\n")
    return f"{format_time(when)} {level}: {clean}"


class MailLog:
    """Appends AsyncOS-style lines to `<logs_dir>/mail_logs`.

    `log` formats the line (its time is the event's) and keeps it; lines
    logged during one turn of the event loop are written and flushed together
    at the end of that turn (a busy gateway logs a dozen lines per message:
    one write a turn instead of one a line, and no thread to hand them to).
    An operator tailing the file sees each event within milliseconds. Outside
    an event loop (start-up, a worker thread with nothing scheduled) a line is
    written at once. `flush` writes whatever waits; `close` does too.
    """

    def __init__(self, logs_dir: Path, *, appliance: str, serial: str,
                 echo: TextIO | None = None) -> None:
        self.path = Path(logs_dir) / "mail_logs"
        make_dir(self.path.parent)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        # 0640 whatever the umask; a file an earlier run left looser is tightened
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        if os.fstat(fd).st_mode & UMASK:
            os.fchmod(fd, os.fstat(fd).st_mode & FILE_MODE)
        self._file = open(  # noqa: SIM115 (held open for the process's life; closed by close())
            fd, "a", encoding="utf-8", errors="backslashreplace")
        self._echo = echo
        self._pending: list[str] = []
        self._scheduled = False
        self._lock = threading.Lock()  # lines may come from other threads too
        if fresh:
            self.info("Begin Logfile")
            self.info(f"Version: pvoq {__version__} SN: {serial}")
            self.info(f"Time offset from UTC: {-time.timezone} seconds")
        self.info(f"Logfile opened by {appliance} (pid {os.getpid()})")

    def log(self, text: str, *, level: str = "Info") -> None:
        if self._file.closed:
            raise ValueError("mail_logs is closed")
        line = format_line(text, level=level)
        loop: asyncio.AbstractEventLoop | None = None
        with self._lock:
            self._pending.append(line)
            if self._scheduled:
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            self._scheduled = loop is not None
        if loop is None:
            self.flush()
        else:
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write and flush every line logged so far."""
        with self._lock:
            lines, self._pending, self._scheduled = self._pending, [], False
            if not lines or self._file.closed:
                return
            text = "\n".join(lines)
            self._file.write(text + "\n")
            self._file.flush()
            if self._echo is not None:
                print(text, file=self._echo, flush=True)

    def info(self, text: str) -> None:
        self.log(text, level="Info")

    def warning(self, text: str) -> None:
        self.log(text, level="Warning")

    def critical(self, text: str) -> None:
        self.log(text, level="Critical")

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()
