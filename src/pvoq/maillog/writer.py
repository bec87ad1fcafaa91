"""The mail_logs writer.

Owns the on-disk log `<data>/logs/mail_logs`, one line per event, in the form
administrators of AsyncOS grep every day::

    Fri Sep 13 15:08:02 2013 Info: New SMTP DCID 12345 interface 10.10.20.1 address 10.10.10.1 port 7025

The file starts with `Begin Logfile` and a `Version:` line. Lines are written
and flushed within the event loop's turn that logged them (an operator tails
this file while troubleshooting); they are not fsync'd: the log is evidence,
the spool is the truth.

The file rolls over (`maillog.rollover`: a rename, never a copy) when it
reaches its `max_file_size`, when its `rollover_interval_seconds` has passed
since it began, and on `rollover_now`; it then ends with `Logfile rolled
over` and a new file begins. `reopen` (SIGHUP) follows an outside rename
(logrotate). Each line may also be pushed to a syslog server
(`maillog.syslog`). Files are 0640 and the directory 0750 whatever the umask.

This module must never decide anything about mail: it only writes lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import TextIO

from pvoq import __version__
from pvoq.fsutil import FILE_MODE, UMASK, fsync_dir, make_dir
from pvoq.maillog.rollover import prune, rolled_name
from pvoq.maillog.settings import LEVELS, LogSettings
from pvoq.maillog.syslog import SyslogSender

BEGIN = "Begin Logfile"
ROLLED_OVER = "Logfile rolled over"
ROLL_RETRY_S = 60.0
"""After a failed rollover (the rename refused), the next attempt by size or time waits this."""
TICK_S = 1.0
"""How often the rollover by time is checked when nothing is logged."""
SIZE_CHECK_S = 1.0
"""The file's size is asked of the system at least this often (otherwise counted)."""
_STAMP = re.compile(r"([A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d \d{4}) ")


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


def parse_time(line: str) -> float | None:
    """The epoch of a mail_logs *line*'s time stamp (local time), or None."""
    found = _STAMP.match(line)
    if found is None:
        return None
    try:
        return time.mktime(time.strptime(found.group(1), "%a %b %d %H:%M:%S %Y"))
    except (ValueError, OverflowError):
        return None


class MailLog:
    """Appends AsyncOS-style lines to `<logs_dir>/mail_logs`, rolls it over, pushes to syslog.

    `log` formats the line (its time is the event's) and keeps it; lines
    logged during one turn of the event loop are written and flushed together
    at the end of that turn (a busy gateway logs a dozen lines per message:
    one write a turn instead of one a line, and no thread to hand them to).
    An operator tailing the file sees each event within milliseconds. Outside
    an event loop (start-up, a worker thread with nothing scheduled) a line is
    written at once. `flush` writes whatever waits; `close` does too.

    *settings* (`<logs>`): level, rollover by size and time, files kept,
    syslog; `configure` changes them (on reload). A thread checks the
    rollover by time every `TICK_S` while nothing is logged.
    """

    def __init__(self, logs_dir: Path, *, appliance: str, serial: str,
                 echo: TextIO | None = None, settings: LogSettings | None = None,
                 hostname: str | None = None) -> None:
        self.settings = settings or LogSettings()
        self.name = self.settings.name
        self.directory = Path(logs_dir)
        self.path = self.directory / self.name
        self._serial = serial
        self._hostname = hostname or socket.gethostname()
        self._echo = echo
        self._pending: list[tuple[str, str, str, float]] = []
        self._scheduled = False
        self._lock = threading.RLock()  # lines may come from other threads too
        self._closed = threading.Event()
        self._kept: frozenset[str] = frozenset()  # the levels written under `_kept_for`
        self._kept_for: LogSettings | None = None
        make_dir(self.directory)
        self._file = self._open()
        self._began = self._first_line_time() or time.time()
        self._retry_at = 0.0
        self._syslog: SyslogSender | None = None
        self._start_syslog()
        self._ticker = threading.Thread(target=self._tick_loop, name=f"{self.name} rollover",
                                        daemon=True)
        self._ticker.start()
        self.info(f"Logfile opened by {appliance} (pid {os.getpid()})")

    # -- the file ---------------------------------------------------------------
    def _open(self) -> TextIO:
        """Open (or create) the current file; a new or empty one gets the header lines."""
        # 0640 whatever the umask; a file an earlier run left looser is tightened
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        stat = os.fstat(fd)
        if stat.st_mode & UMASK:
            os.fchmod(fd, stat.st_mode & FILE_MODE)
        self._inode = (stat.st_dev, stat.st_ino)
        self._sized, self._counted, self._sized_at = 0, 0, 0.0  # asked at the next check
        handle = open(  # noqa: SIM115 (held open until the next rollover or close())
            fd, "a", encoding="utf-8", errors="backslashreplace")
        if stat.st_size == 0:
            now = time.time()
            self._began = now
            header = (BEGIN, f"Version: pvoq {__version__} SN: {self._serial}",
                      f"Time offset from UTC: {-time.timezone} seconds")
            text = "".join(format_line(x, epoch=now) + "\n" for x in header)
            handle.write(text)
            handle.flush()
            if self._echo is not None:
                print(text, end="", file=self._echo, flush=True)
        return handle

    def _first_line_time(self) -> float | None:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return parse_time(f.readline(200))
        except OSError:
            return None

    def _write(self, lines: list[tuple[str, str, str, float]]) -> None:
        text = "".join(line + "\n" for line, _, _, _ in lines)
        self._file.write(text)
        self._file.flush()
        self._counted += len(text)  # characters: at most the octets written
        if self._echo is not None:
            print("\n".join(line for line, _, _, _ in lines), file=self._echo, flush=True)
        if self._syslog is not None:
            for _, level, text, epoch in lines:
                self._syslog.submit(text, level, epoch)

    def _end_file(self) -> None:
        """Write `Logfile rolled over` to the file held open and close it."""
        self._file.write(format_line(ROLLED_OVER) + "\n")
        self._file.close()

    def _held_is_current(self) -> bool:
        """Whether the file held open is still the one at `path`."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (stat.st_dev, stat.st_ino) == self._inode

    # -- lines ------------------------------------------------------------------
    def log(self, text: str, *, level: str = "Info") -> None:
        if self._closed.is_set():  # not the file's state: a rollover swaps files under the lock
            raise ValueError(f"{self.name} is closed")
        # `format_line`, inline: a busy gateway logs a dozen lines per message.
        if level not in LEVELS:
            raise ValueError(f"unknown log level {level!r}")
        now = time.time()
        if "\r" in text or "\n" in text:  # a line must stay one line whatever a peer sent us
            text = text.replace("\r", "\\r").replace("\n", "\\n")
        line = f"{_format_second(int(now))} {level}: {text}"
        settings = self.settings
        if settings is not self._kept_for:
            self._kept = frozenset(x for x in LEVELS if settings.keeps(x))
            self._kept_for = settings
        if level not in self._kept:
            return
        loop: asyncio.AbstractEventLoop | None = None
        with self._lock:
            self._pending.append((line, level, text, now))
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
        """Write and flush every line logged so far (then roll over if it is time)."""
        with self._lock:
            lines, self._pending, self._scheduled = self._pending, [], False
            if self._file.closed:
                return
            if lines:
                self._write(lines)
            self._roll_if_due()

    def info(self, text: str) -> None:
        self.log(text, level="Info")

    def warning(self, text: str) -> None:
        self.log(text, level="Warning")

    def critical(self, text: str) -> None:
        self.log(text, level="Critical")

    # -- rollover -----------------------------------------------------------------
    def _roll_if_due(self) -> None:
        settings, now = self.settings, time.time()
        if now < self._retry_at:
            return
        if not (self._reached(settings.max_file_size, now)
                or (settings.rollover_interval_seconds
                    and now - self._began >= settings.rollover_interval_seconds)):
            return
        try:
            self._roll()
        except OSError as exc:
            self._retry_at = now + ROLL_RETRY_S
            self._write([self._line(f"Logfile rollover failed: {exc}; retried in "
                                    f"{ROLL_RETRY_S:g} seconds", "Warning")])

    def _reached(self, limit: int, now: float) -> bool:
        """Whether the held file has *limit* octets. Counted from what was written since
        the system was last asked (a busy appliance flushes many times a second), and
        asked once the count says so, or at least every `SIZE_CHECK_S` (the file may
        have been written to or cut from outside)."""
        if self._sized + self._counted < limit and now - self._sized_at < SIZE_CHECK_S:
            return False
        self._sized, self._counted = os.fstat(self._file.fileno()).st_size, 0
        self._sized_at = now
        return self._sized >= limit

    def _roll(self) -> str | None:
        """Rename the current file to its rolled name and begin a new one (lock held).

        Returns the rolled file's name; None when the file held open is no longer at
        `path` (renamed from outside: it is closed and a new one begun, as `reopen`).
        """
        if not self._held_is_current():
            self._reopen()
            return None
        rolled = rolled_name(self.name, time.time(), set(os.listdir(self.directory)))
        self._end_file()
        try:
            os.rename(self.path, self.directory / rolled)
        except OSError:
            self._file = self._open()  # the same file again: lines go on where they were
            raise
        self._file = self._open()
        with contextlib.suppress(OSError):
            fsync_dir(self.directory)
            prune(self.directory, self.name, self.settings.max_files)
        return rolled

    def _line(self, text: str, level: str) -> tuple[str, str, str, float]:
        now = time.time()
        line = format_line(text, level=level, epoch=now)
        return line, level, line[line.index(": ", 20) + 2:], now

    def _reopen(self) -> None:
        self._end_file()
        self._file = self._open()
        self._began = self._first_line_time() or time.time()

    def rollover_now(self) -> str | None:
        """Roll the log over now (`rollovernow`); the rolled file's name (see `_roll`)."""
        with self._lock:
            lines, self._pending, self._scheduled = self._pending, [], False
            if self._file.closed:
                raise ValueError(f"{self.name} is closed")
            if lines:
                self._write(lines)
            return self._roll()

    def reopen(self) -> bool:
        """Follow an outside rename (logrotate, then SIGHUP): when `path` is no longer the
        file held open, end that one with `Logfile rolled over` and open `path` anew.
        Returns whether it did."""
        with self._lock:
            lines, self._pending, self._scheduled = self._pending, [], False
            if self._file.closed:
                return False
            if lines:
                self._write(lines)
            if self._held_is_current():
                return False
            self._reopen()
        self.info(f"Logfile reopened by pid {os.getpid()}: the previous file was moved away")
        return True

    def _tick_loop(self) -> None:
        while not self._closed.wait(TICK_S):
            with contextlib.suppress(OSError, ValueError):
                self.flush()

    # -- settings -----------------------------------------------------------------
    def _start_syslog(self) -> None:
        target = self.settings.syslog
        self._syslog = None if target is None else SyslogSender(
            target, hostname=self._hostname, msgid=self.name, warn=self.warning)

    def configure(self, settings: LogSettings) -> None:
        """Take new settings (a reload); a changed syslog target restarts the push."""
        old_sender = None
        with self._lock:
            old, self.settings = self.settings, settings
            if old.syslog != settings.syslog:
                old_sender = self._syslog
                self._start_syslog()
        if old_sender is not None:  # its last lines may take a while: not on the event loop
            threading.Thread(target=old_sender.close, name="syslog close", daemon=True).start()
        self.flush()

    def syslog_state(self) -> dict[str, object] | None:
        """The syslog push's counters, for `logconfig` (None: no push)."""
        sender = self._syslog
        if sender is None:
            return None
        return {"target": sender.target.describe(), "connected": sender.connected,
                "sent": sender.sent, "dropped": sender.dropped, "waiting": sender.pending(),
                "last_error": sender.last_error}

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if not self._file.closed:
                self.flush()
                self._file.close()
            sender, self._syslog = self._syslog, None
        if sender is not None:
            sender.close()
