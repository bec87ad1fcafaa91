"""An appliance's start: the process umask, loose modes left by an earlier run, leftovers.

The gateway is built in this process (no listeners started); the umask the
appliance sets is the test process's, so each test puts the old one back.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pvoq.config.loader import load_config
from pvoq.config.template import ApplianceSpec
from pvoq.deploy import init_appliance
from pvoq.gateway import Gateway
from pvoq.testing.files import dead_pid


@pytest.fixture
def config_path(tmp_path: Path, umask_000: None) -> Path:
    return init_appliance(tmp_path / "gw", ApplianceSpec(role="gateway", hostname="gw.test",
                                                         serial="SN"), ca_dir=tmp_path / "ca")


def _start(config_path: Path) -> Gateway:
    gw = Gateway(load_config(config_path))
    gw.maillog.flush()
    return gw


def _stop(gw: Gateway) -> list[str]:
    gw.spool.close()
    gw.maillog.close()
    return gw.maillog.path.read_text().splitlines()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_process_umask_is_restricted(config_path: Path) -> None:
    """Under an inherited umask 000 the appliance's process creates nothing group-writable
    or readable by others, whoever creates it (here: a plain open())."""
    gw = _start(config_path)
    try:
        probe = config_path.parent / "data" / "probe"
        with open(probe, "w"):
            pass
        assert _mode(probe) == 0o640
    finally:
        _stop(gw)


def test_loose_modes_from_an_earlier_run_are_tightened_and_logged(config_path: Path) -> None:
    data = config_path.parent / "data"
    (data / "logs").mkdir(mode=0o777)
    log = data / "logs" / "mail_logs"
    log.write_text("")
    for path, mode in ((data, 0o777), (data / "logs", 0o777), (log, 0o666)):
        path.chmod(mode)
    gw = _start(config_path)
    lines = _stop(gw)
    assert (_mode(data), _mode(data / "logs"), _mode(log)) == (0o750, 0o750, 0o640)
    assert any(f"Warning: File mode of {data} tightened from 0777 to 0750" in x for x in lines)
    assert any(f"Warning: File mode of {log} tightened from 0666 to 0640" in x for x in lines)


def test_temporary_files_are_removed_everywhere_and_counted(config_path: Path) -> None:
    """Leftovers of interrupted writes: in the data directory's subdirectories, beside the
    configuration and the certificates; a live process's write in progress is kept."""
    gw_dir = config_path.parent
    data, dead = gw_dir / "data", dead_pid()
    planted = [data / "spool" / f".1.eml.{dead}.tmp",
               data / "spool" / "bad" / f".2.json.{dead}.tmp",
               data / "quarantine" / "bodies" / f".3.eml.{dead}.tmp",
               data / "ssh" / f".id_ed25519.{dead}.tmp",
               data / "cpq_transfers" / f".abc.{dead}.tmp",
               gw_dir / f".pvoq.xml.{dead}.tmp",
               gw_dir / "certs" / f".cpq.key.{dead}.tmp"]
    live = data / "ssh" / f".enrol_tokens.json.{os.getppid()}.tmp"
    foreign = gw_dir / "notes.tmp"  # not a name pvoq gives, beside the configuration
    for path in [*planted, live, foreign]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a write")
    gw = _start(config_path)
    lines = _stop(gw)
    assert [p for p in planted if p.exists()] == []
    assert live.exists() and foreign.exists()
    [line] = [x for x in lines if "temporary files" in x]
    assert "Info: Removed 7 temporary files left by interrupted writes (" in line
    for where in ("spool 1", "spool/bad 1", "quarantine/bodies 1", "ssh 1", "cpq_transfers 1",
                  f"{gw_dir} 1", f"{gw_dir / 'certs'} 1"):
        assert where in line
