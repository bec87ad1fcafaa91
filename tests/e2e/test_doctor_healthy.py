"""`pvoq doctor` on a healthy deployment (gateway, manager, sink, SSH link): all OK."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvoq.testing.localdeploy import GATEWAY, Deployment, wait_for


def doctor(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", "doctor", "-c", str(config), *extra],
                          capture_output=True, text=True, timeout=120)


def doctor_json(config: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    result = doctor(config, "--json")
    report = json.loads(result.stdout)
    assert report["ok"] == (result.returncode == 0)
    return result.returncode, {c["name"]: c for c in report["checks"]}


@pytest.fixture
def linked(tmp_path: Path) -> Iterator[Deployment]:
    """A running deployment whose manager has added the gateway over SSH."""
    dep = Deployment(tmp_path / "deploy", retry_min_s=0.5, retry_max_s=2.0, ssh=True)
    dep.init()
    try:
        dep.start()
        dep.add_gateway_over_ssh()
        # healthy: the manager's log subscription has pulled the new gateway's log
        # (it is woken by the add, not left to its next interval)
        wait_for("the first pull of the gateway's mail_logs", lambda: any(
            g["name"] == GATEWAY and g["last_pull"] and not g["failing"]
            for g in dep.admin(dep.manager_config, "logsub.status")["data"]["gateways"]),
            timeout_s=30)
        yield dep
    finally:
        dep.stop_all()


class TestHealthy:
    def test_every_check_is_ok_on_both_sides(self, linked: Deployment) -> None:
        """Exit 0; every line OK on both sides, the manager's log subscription of the
        gateway included; each check of the note is there."""
        dep = linked
        code, gateway = doctor_json(dep.gateway_config)
        assert code == 0
        assert {c["status"] for c in gateway.values()} == {"OK"}, gateway
        for name in ("appliance", "listeners", "delivery", "cpq reach manager manager.pvoq.test",
                     "cpq certificate manager manager.pvoq.test",
                     "tls negotiated manager manager.pvoq.test", "queue the.cpq.host",
                     "cluster interface", "ciphers ssl_config outbound_ciphers", "certificate",
                     "enable readiness", "clock skew", "disk spool", "disk logs", "permissions",
                     "clamd"):
            assert name in gateway, name
        code, manager = doctor_json(dep.manager_config)
        assert code == 0
        not_ok = {n: c for n, c in manager.items() if c["status"] != "OK"}
        assert not not_ok, not_ok
        for name in ("appliance", "cpq reach gateway gw1.pvoq.test",
                     "cpq certificate gateway gw1.pvoq.test", "queue the.cpq.release.host",
                     "ssh gw1.pvoq.test", "clock skew gw1.pvoq.test",
                     "listeners gateway gw1.pvoq.test", "disk store", "store schema",
                     "log subscription gw1.pvoq.test"):
            assert name in manager, name
        assert "host key verified, manager authorized" in manager["ssh gw1.pvoq.test"][
            "observed"]
        assert "TLSv1.3" in gateway["tls negotiated manager manager.pvoq.test"]["observed"]

    def test_the_text_report_has_one_line_per_check(self, linked: Deployment) -> None:
        result = doctor(linked.gateway_config)
        assert result.returncode == 0, result.stdout
        lines = result.stdout.splitlines()
        assert lines[0] == (f"pvoq doctor: gateway gw1.pvoq.test "
                            f"({linked.gateway_config.resolve()})")
        assert all(line.startswith("OK    ") for line in lines[1:-1])
        assert lines[-1] == f"{len(lines) - 2} OK, 0 WARN, 0 FAIL"
