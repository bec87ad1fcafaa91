"""Doctor's clock-skew check, end to end: a real gateway process whose clock runs ten minutes
ahead (libfaketime, preloaded into that process only) and a real manager that reads it over
SSH. `pvoq doctor` on the manager says FAIL for the clock skew, naming the gateway and the
size of the skew, with the fix; the SSH link itself is OK. A gateway on time: OK."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvoq.testing.localdeploy import GATEWAY, Deployment

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
AHEAD_S = 600
SKEW = re.compile(rf"^gateway {re.escape(GATEWAY)} is (\d+\.\d)s (ahead|behind) "
                  r"\(±(\d+\.\d)s\)")
LINE = f"clock skew {GATEWAY}"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", *args], capture_output=True,
                          text=True, timeout=180)


def doctor(config: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    result = _run("doctor", "-c", str(config), "--json")
    report = json.loads(result.stdout)
    return result.returncode, {c["name"]: c for c in report["checks"]}


def _deployment(root: Path, gateway_env: dict[str, str]) -> Deployment:
    dep = Deployment(root, retry_min_s=0.5, retry_max_s=2.0, ssh=True,
                     env={"gateway": gateway_env})
    dep.init()
    dep.start()
    token = dep.admin(dep.gateway_config, "ssh.token")["data"]["token"]
    added = _run("cli", "-c", str(dep.manager_config), "gateway", "add", GATEWAY,
                 "--host", dep.ip, "--ssh-port", str(dep.ports["gateway_ssh"]),
                 "--token", token)
    assert added.returncode == 0, added.stderr
    return dep


@pytest.fixture
def ahead(tmp_path: Path) -> Iterator[Deployment]:
    """A deployment whose gateway's clock is AHEAD_S seconds ahead of the manager's."""
    assert LIBFAKETIME.exists(), (
        f"{LIBFAKETIME} is missing: install Debian's faketime package "
        "(apt-get install -y --no-install-recommends faketime; .ci/run does it)")
    dep = Deployment(tmp_path / "deploy")
    try:
        dep = _deployment(tmp_path / "deploy", {
            "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME": f"+{AHEAD_S}s",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_NO_CACHE": "1"})
        yield dep
    finally:
        dep.stop_all()


@pytest.fixture
def on_time(tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(tmp_path / "deploy")
    try:
        dep = _deployment(tmp_path / "deploy", {})
        yield dep
    finally:
        dep.stop_all()


def test_doctor_fails_a_gateway_ten_minutes_ahead_naming_it_and_the_skew(
        ahead: Deployment) -> None:
    code, report = doctor(ahead.manager_config)
    assert report[f"ssh {GATEWAY}"]["status"] == "OK", report[f"ssh {GATEWAY}"]
    line = report[LINE]
    assert line["status"] == "FAIL", line
    found = SKEW.match(line["observed"])
    assert found is not None, line["observed"]
    seconds, direction, slack = float(found[1]), found[2], float(found[3])
    assert direction == "ahead"
    assert abs(seconds - AHEAD_S) <= slack + 5, line["observed"]
    assert "mail_logs times and quarantine times disagree" in line["observed"]
    assert "NTP" in line["fix"] and "timedatectl" in line["fix"]
    assert code != 0


def test_doctor_says_ok_for_a_gateway_on_time(on_time: Deployment) -> None:
    _, report = doctor(on_time.manager_config)
    line = report[LINE]
    assert line["status"] == "OK", line
    found = SKEW.match(line["observed"])
    assert found is not None, line["observed"]
    assert float(found[1]) <= float(found[3]) + 5, line["observed"]
