"""`pvoq config check` and `pvoq cli reload` against real files, processes and sockets."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from pvoq.testing.localdeploy import Deployment, wait_for


def pvoq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", *args], capture_output=True,
                          text=True, timeout=60)


def line_number(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


class TestConfigCheck:
    def test_a_hostname_the_certificate_does_not_name_fails(
            self, deployment: Deployment) -> None:
        """It passed: peers then refuse every CPQ connection."""
        config = deployment.gateway_config
        assert pvoq("config", "check", "-c", str(config)).returncode == 0
        text = config.read_text()
        hostname = text.split("<hostname>")[1].split("</hostname>")[0]
        config.write_text(text.replace(f"<hostname>{hostname}<", "<hostname>gw9.example.test<"))
        result = pvoq("config", "check", "-c", str(config))
        assert result.returncode == 2
        cert = config.parent / "certs" / "cpq.pem"
        assert result.stderr == (
            f"pvoq: configuration error: {config}:{line_number(config, '<certificate>')}: "
            f"config.cpq_certificate.certificate: the certificate {cert} names {hostname}, "
            "not this appliance's hostname gw9.example.test (system.hostname)\n")


class TestReload:
    def test_a_broken_file_is_refused_by_the_running_appliance(
            self, running: Deployment) -> None:
        """`reload` exited 2 without asking; the appliance now refuses, keeps its
        configuration, and the command exits 1."""
        config = running.gateway_config
        good = config.read_text()
        config.write_text(re.sub(r"<retry_min_seconds>[^<]*<", "<retry_min_seconds>nan<", good))
        line = line_number(config, "<retry_min_seconds>")
        result = pvoq("cli", "-c", str(config), "reload")
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith(
            "Configuration reload refused, the running one is kept: "
            f"{config}:{line}: config.delivery.retry_min_seconds: not a finite number")
        assert any("Configuration reload refused" in x for x in running.mail_logs("gateway"))
        running.send(subject="confidential", body="still flows")
        assert wait_for("quarantined", running.quarantined)
        config.write_text(good)
        reloaded = pvoq("cli", "-c", str(config), "reload")
        assert reloaded.returncode == 0 and "Configuration reloaded" in reloaded.stdout
