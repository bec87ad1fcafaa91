"""The mail_logs writer.

Owns the on-disk log `<data>/logs/mail_logs`, one line per event, in the form
administrators of AsyncOS grep every day::

    Fri Sep 13 15:08:02 2013 Info: New SMTP DCID 12345 interface 10.10.20.1 address 10.10.10.1 port 7025

The file starts with `Begin Logfile` and a `Version:` line. Lines are written
and flushed by a writer thread as soon as they are logged (an operator tails
this file while troubleshooting); they are not fsync'd: the log is evidence,
the spool is the truth.

This module must never decide anything about mail: it only writes lines.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
import time
from pathlib import Path
from typing import TextIO

from pvoq import __version__

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

    `log` formats the line (its time is the event's) and hands it to a writer
    thread, which writes and flushes whatever lines are waiting, in order. An
    operator tailing the file sees each event within milliseconds, and the
    event loop never waits on the disk: an append to a file can stall while
    the filesystem commits its journal for the spool's fsyncs. `flush` waits
    until every line handed in so far is in the file; `close` does too.
    """

    def __init__(self, logs_dir: Path, *, appliance: str, serial: str,
                 echo: TextIO | None = None) -> None:
        self.path = Path(logs_dir) / "mail_logs"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(  # noqa: SIM115 (held open for the process's life; closed by close())
            self.path, "a", encoding="utf-8", errors="backslashreplace")
        self._echo = echo
        self._lines: queue.SimpleQueue[str | threading.Event | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_forever, daemon=True,
                                        name="mail_logs")
        self._writer.start()
        if fresh:
            self.info("Begin Logfile")
            self.info(f"Version: pvoq {__version__} SN: {serial}")
            self.info(f"Time offset from UTC: {-time.timezone} seconds")
        self.info(f"Logfile opened by {appliance} (pid {os.getpid()})")

    def log(self, text: str, *, level: str = "Info") -> None:
        if self._file.closed:
            raise ValueError("mail_logs is closed")
        self._lines.put(format_line(text, level=level))

    def _write_forever(self) -> None:
        while True:
            item = self._lines.get()
            lines: list[str] = []
            marks: list[threading.Event] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    marks.append(item)
                else:
                    lines.append(item)
                try:
                    item = self._lines.get_nowait()
                except queue.Empty:
                    break
            if lines:
                self._file.write("\n".join(lines) + "\n")
                self._file.flush()
                if self._echo is not None:
                    print("\n".join(lines), file=self._echo, flush=True)
            for mark in marks:
                mark.set()
            if stop:
                return

    def flush(self, timeout: float = 10.0) -> None:
        """Return once every line logged so far is in the file."""
        if not self._writer.is_alive():
            return
        mark = threading.Event()
        self._lines.put(mark)
        mark.wait(timeout)

    def info(self, text: str) -> None:
        self.log(text, level="Info")

    def warning(self, text: str) -> None:
        self.log(text, level="Warning")

    def critical(self, text: str) -> None:
        self.log(text, level="Critical")

    def close(self) -> None:
        if not self._file.closed:
            if self._writer.is_alive():
                self._lines.put(None)
                self._writer.join(10)
            self._file.close()
