"""`pvoq cli logsub status`: the text it prints from `logsub.status` (pvoq.cli.track)."""

from __future__ import annotations

from typing import Any

from pvoq.cli.track import _status_lines


def _data(**extra: Any) -> dict[str, Any]:
    return {"enabled": True, "interval_seconds": 60.0, "chunk_bytes": 1048576,
            "chunk_lines": 10000, "gateways": [],
            "manager": {"name": "sma.example.com", "lines": 3, "last_line_time": None},
            **extra}


def test_retention_and_rollover_are_shown() -> None:
    lines = _status_lines(_data(retention_days=30.0, max_file_size=10485760))
    assert lines[1] == ("  tracking data kept 30 days; copies roll over past 10485760 bytes")
    forever = _status_lines(_data(retention_days=0.0, max_file_size=1024))
    assert forever[1] == "  tracking data kept forever; copies roll over past 1024 bytes"


def test_a_manager_that_does_not_say_gets_no_retention_line() -> None:
    lines = _status_lines(_data())
    assert lines[1] == "  sma.example.com (this manager's own mail_logs): 3 lines"
