"""`pvoq cli pvo check`: the readiness check behind the gateway's Enable button."""

from __future__ import annotations

import subprocess
import sys

from pvoq.testing.localdeploy import GATEWAY, Deployment


def pvo_check(dep: Deployment) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(dep.gateway_config),
                           "pvo", "check"], capture_output=True, text=True, timeout=60)


class TestPvoCheck:
    def test_ready_when_the_manager_knows_the_gateway(self, running: Deployment) -> None:
        """With both appliances up and registered, the check says Ready and exits 0."""
        result = pvo_check(running)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Ready: the manager at 127.0.0.1:")
        assert f"can be enabled for {GATEWAY}" in result.stdout
        assert any("CPQ readiness check for gw1.pvoq.test: ready" in line
                   for line in running.mail_logs("manager"))

    def test_not_ready_when_the_manager_is_down(self, running: Deployment) -> None:
        """A manager that does not answer gives the exact reason and exit 1."""
        running.stop("manager")
        result = pvo_check(running)
        assert result.returncode == 1
        assert "Not ready: the manager at 127.0.0.1:" in result.stderr
        assert "connection to 127.0.0.1:" in result.stderr

    def test_not_ready_when_the_gateway_is_not_registered(self, running: Deployment) -> None:
        """A manager that does not list this gateway says so, naming it."""
        config = running.manager_config
        config.write_text(config.read_text().replace(f"<hostname>{GATEWAY}</hostname>",
                                                     "<hostname>other.pvoq.test</hostname>"))
        running.admin(config, "reload")
        result = pvo_check(running)
        assert result.returncode == 1
        assert f"gateway {GATEWAY} is not registered on this manager" in result.stderr
