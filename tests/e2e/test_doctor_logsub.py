"""Doctor's log subscription check, end to end: a real gateway with its SSH service and a
real manager pulling its mail_logs. While the pulls work, `pvoq doctor` on the manager says
OK for the gateway; once the gateway no longer authorizes the manager's key, it says FAIL,
naming the gateway, with the fix."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from logsubsetup import subscribed_deployment

from pvoq.testing.localdeploy import GATEWAY, Deployment, wait_for

LINE = f"log subscription {GATEWAY}"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", *args], capture_output=True,
                          text=True, timeout=180)


def doctor(config: Path) -> dict[str, dict[str, Any]]:
    result = _run("doctor", "-c", str(config), "--json")
    report = json.loads(result.stdout)
    return {c["name"]: c for c in report["checks"]}


@pytest.fixture
def subscribed(tmp_path: Path) -> Iterator[Deployment]:
    with subscribed_deployment(tmp_path, interval_s=0.5) as dep:
        yield dep


def _gateway_row(dep: Deployment) -> dict[str, Any]:
    status = dep.admin(dep.manager_config, "logsub.status")["data"]
    (row,) = [g for g in status["gateways"] if g["name"] == GATEWAY]
    return dict(row)


def test_doctor_says_ok_while_pulls_work_and_fail_naming_the_gateway_when_they_stop(
        subscribed: Deployment) -> None:
    dep = subscribed
    wait_for("a first pull from the gateway",
             lambda: _gateway_row(dep)["last_pull"] is not None, timeout_s=60)
    healthy = doctor(dep.manager_config)
    assert healthy[LINE]["status"] == "OK", healthy[LINE]
    assert dep.ip in healthy[LINE]["observed"] and "last pull" in healthy[LINE]["observed"]

    # the gateway stops authorizing the manager's key: every pull from now on is refused
    (dep.gateway_config.parent / "data" / "ssh" / "authorized_keys").write_text("")
    wait_for("a refused pull", lambda: (lambda g: g["last_error"] and
                                        (g["last_error_time"] or 0) >= (g["last_pull"] or 0))(
        _gateway_row(dep)), timeout_s=60)
    broken = doctor(dep.manager_config)
    line = broken[LINE]
    assert line["status"] == "FAIL", line
    assert dep.ip in line["observed"] and "last error" in line["observed"]
    assert "reachable over SSH" in line["fix"] and "logsub status" in line["fix"]
