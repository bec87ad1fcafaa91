"""grep and tail over mail_logs lines."""

from __future__ import annotations

from pathlib import Path

from pvoq.maillog.search import follow, grep, tail

LINES = [
    "Mon Apr 1 12:00:00 2014 Info: New SMTP ICID 1 interface Incoming Mail (10.0.0.1)",
    "Mon Apr 1 12:00:00 2014 Info: ICID 1 ACCEPT SG ALL match ALL SBRS none",
    "Mon Apr 1 12:00:01 2014 Info: New CPQ ICID 2 interface Management (10.0.0.2)",
    "Mon Apr 1 12:00:02 2014 Info: New SMTP DCID 3 interface 10.0.0.1 address 10.0.0.2 port 7025",
    "Mon Apr 1 12:00:03 2014 Info: DCID 3 close",
    "Mon Apr 1 12:00:04 2014 Info: New CPQ ICID 4 interface Management (10.0.0.2)",
]


class TestGrep:
    def test_matches_a_regex(self) -> None:
        """Only the lines that match the expression come back, in order."""
        assert list(grep(LINES, "CPQ ICID")) == [LINES[2], LINES[5]]
        assert list(grep(LINES, r"port 7025$")) == [LINES[3]]

    def test_ignore_case_and_invert(self) -> None:
        """-i ignores case; -v keeps the lines that do not match."""
        assert list(grep(LINES, "cpq icid", ignore_case=True)) == [LINES[2], LINES[5]]
        assert list(grep(LINES, "ICID", invert=True)) == [LINES[3], LINES[4]]

    def test_context_lines_and_separators(self) -> None:
        """-C n adds n lines around each match and `--` between separate runs."""
        assert list(grep(LINES, "ACCEPT", context=1)) == LINES[0:3]
        assert list(grep(LINES, "ICID 1 ACCEPT|ICID 4", context=0)) == [LINES[1], LINES[5]]
        out = list(grep(LINES, "ICID 1 ACCEPT|DCID 3 close$", context=0))
        assert out == [LINES[1], LINES[4]]
        spaced = list(grep(LINES[:2] + ["x", "y", "z"] + LINES[2:3], "ACCEPT|CPQ", context=1))
        assert "--" in spaced


class TestTail:
    def test_last_lines_and_follow(self, tmp_path: Path) -> None:
        """tail returns the last n lines; follow yields lines appended later."""
        path = tmp_path / "mail_logs"
        path.write_text("\n".join(LINES) + "\n")
        assert tail(path, 2) == LINES[-2:]
        follower = follow(path, poll_s=0.01, stop_after_s=5)
        with open(path, "a") as f:
            f.write("Mon Apr 1 12:00:05 2014 Info: ICID 4 close\n")
        assert next(follower) == "Mon Apr 1 12:00:05 2014 Info: ICID 4 close"
