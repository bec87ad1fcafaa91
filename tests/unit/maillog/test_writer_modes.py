"""mail_logs is created 0640 in a 0750 directory whatever the umask; a looser one is tightened."""

from __future__ import annotations

import stat
from pathlib import Path

from pvoq.maillog import MailLog


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_log_under_umask_000(tmp_path: Path, umask_000: None) -> None:
    log = MailLog(tmp_path / "data" / "logs", appliance="gateway gw", serial="SN")
    log.close()
    assert _mode(log.path) == 0o640
    assert _mode(log.path.parent) == 0o750


def test_world_writable_log_is_tightened(tmp_path: Path) -> None:
    """The file an unprivileged user appended forged lines to is theirs no more."""
    path = tmp_path / "mail_logs"
    path.write_text("")
    path.chmod(0o666)
    log = MailLog(tmp_path, appliance="gateway gw", serial="SN")
    log.close()
    assert _mode(path) == 0o640
    assert "Begin Logfile" in path.read_text()
