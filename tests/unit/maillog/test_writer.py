"""Tests for pvoq.maillog.writer: the AsyncOS line format and the mail_logs file."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

from pvoq import __version__
from pvoq.maillog.settings import LogSettings
from pvoq.maillog.writer import MailLog, format_line

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# 2014-04-05 12:00:00 UTC: a single-digit day of the month in every time zone.
EPOCH = 1396699200.0


def expected_stamp(epoch: float) -> str:
    """Build the AsyncOS time stamp of *epoch* independently of the code under test."""
    t = time.localtime(epoch)
    return (f"{DAYS[t.tm_wday]} {MONTHS[t.tm_mon - 1]} {t.tm_mday} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {t.tm_year}")


def read_lines(log: MailLog) -> list[str]:
    """The lines written so far to *log*'s file."""
    log.flush()
    return log.path.read_text(encoding="utf-8").splitlines()


class TestFormatLine:
    def test_asyncos_layout(self) -> None:
        """A line is `Www Mmm D HH:MM:SS YYYY Info: text` in local time."""
        line = format_line("New SMTP ICID 5 interface Management", epoch=EPOCH)
        assert line == f"{expected_stamp(EPOCH)} Info: New SMTP ICID 5 interface Management"
        assert re.fullmatch(r"[A-Z][a-z]{2} [A-Z][a-z]{2} [1-9]\d? \d\d:\d\d:\d\d \d{4} Info: .*",
                            line)

    def test_day_is_not_zero_padded(self) -> None:
        """A single-digit day of the month is written without a leading zero."""
        day = time.localtime(EPOCH).tm_mday
        assert day < 10  # the chosen epoch is a single-digit day everywhere
        fields = format_line("x", epoch=EPOCH).split(" ")
        assert fields[2] == str(day)

    def test_level_is_written(self) -> None:
        """The level given is the word before the colon."""
        assert format_line("disk full", level="Warning", epoch=EPOCH).endswith(
            " Warning: disk full")

    def test_unknown_level_is_refused(self) -> None:
        """A level AsyncOS does not know raises ValueError."""
        with pytest.raises(ValueError, match="Verbose"):
            format_line("x", level="Verbose", epoch=EPOCH)

    def test_newlines_are_escaped(self) -> None:
        """CR and LF in the text are written as `\\r` and `\\n`, keeping the line one line."""
        line = format_line("RCPT TO:<a@b>\r\nRSET\nQUIT", epoch=EPOCH)
        assert "\n" not in line and "\r" not in line
        assert line.endswith(r"Info: RCPT TO:<a@b>\r\nRSET\nQUIT")

    def test_current_time_by_default(self) -> None:
        """Without an epoch the line is stamped with the current time."""
        before = time.time()
        line = format_line("now")
        after = time.time()
        assert line.endswith(" Info: now")
        stamp = line[: -len(" Info: now")]
        assert stamp in {expected_stamp(before), expected_stamp(after)}


class TestMailLog:
    def test_fresh_file_starts_with_header(self, tmp_path: Path) -> None:
        """A new mail_logs starts with `Begin Logfile` and a `Version:` line naming the serial."""
        log = MailLog(tmp_path / "logs", appliance="gw1", serial="SN-42")
        try:
            lines = read_lines(log)
        finally:
            log.close()
        assert lines[0].endswith("Info: Begin Logfile")
        assert lines[1].endswith(f"Info: Version: pvoq {__version__} SN: SN-42")
        assert any("Logfile opened by gw1" in line for line in lines)

    def test_reopen_does_not_repeat_header(self, tmp_path: Path) -> None:
        """Reopening an existing mail_logs appends without a second header."""
        MailLog(tmp_path, appliance="gw1", serial="SN-42").close()
        log = MailLog(tmp_path, appliance="gw1", serial="SN-42")
        log.info("second run")
        lines = read_lines(log)
        log.close()
        assert sum(line.endswith("Begin Logfile") for line in lines) == 1
        assert sum(" Version: " in line for line in lines) == 1
        assert sum("Logfile opened by gw1" in line for line in lines) == 2
        assert lines[-1].endswith("Info: second run")

    def test_empty_file_counts_as_fresh(self, tmp_path: Path) -> None:
        """An existing but empty mail_logs still gets the header."""
        (tmp_path / "mail_logs").write_bytes(b"")
        log = MailLog(tmp_path, appliance="gw1", serial="SN-1")
        lines = read_lines(log)
        log.close()
        assert lines[0].endswith("Begin Logfile")

    def test_lines_are_flushed_at_once(self, tmp_path: Path) -> None:
        """A logged line is in the file before the log is closed, with its level."""
        log = MailLog(tmp_path, appliance="gw1", serial="SN-1")
        log.warning("queue is 90% full")
        log.critical("spool unwritable")
        lines = read_lines(log)
        log.close()
        assert lines[-2].endswith("Warning: queue is 90% full")
        assert lines[-1].endswith("Critical: spool unwritable")

    def test_a_logged_line_is_format_lines_and_follows_the_level_in_force(
            self, tmp_path: Path) -> None:
        """`log` writes what `format_line` makes (CR and LF escaped), and the level set
        by `configure` decides from the next line on."""
        log = MailLog(tmp_path, appliance="gw1", serial="SN-1")
        log.info("Subject a\r\nCritical: forged")
        log.configure(LogSettings(level="Warning"))
        log.info("not kept")
        log.warning("kept")
        log.configure(LogSettings(level="Info"))
        log.info("kept again")
        lines = read_lines(log)
        log.close()
        at = next(i for i, x in enumerate(lines) if "Subject a" in x)
        assert lines[at].split(" Info: ", 1)[1] == "Subject a\\r\\nCritical: forged"
        assert [x.split(" ", 5)[5] for x in lines[at + 1:]] == ["Warning: kept",
                                                             "Info: kept again"]

    def test_echo_receives_the_same_lines(self, tmp_path: Path) -> None:
        """With an echo stream every line also goes there, identical to the file."""
        echo = io.StringIO()
        log = MailLog(tmp_path, appliance="gw1", serial="SN-1", echo=echo)
        log.info("hello")
        lines = read_lines(log)
        log.close()
        assert echo.getvalue().splitlines() == lines

    def test_close_is_idempotent(self, tmp_path: Path) -> None:
        """Closing twice is harmless."""
        log = MailLog(tmp_path, appliance="gw1", serial="SN-1")
        log.close()
        log.close()
        assert log._file.closed
