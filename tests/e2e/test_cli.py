"""The `pvoq` command as an operator runs it: exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pvoq.testing.localdeploy import Deployment


def pvoq(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


class TestConfigErrors:
    def test_broken_port_names_file_line_and_field_with_exit_2(
            self, deployment: Deployment) -> None:
        """A bad value gives exit 2 and one line: file, line, field."""
        config = deployment.gateway_config
        lines = config.read_text().splitlines()
        index = next(i for i, line in enumerate(lines) if "<port>" in line)
        lines[index] = "    <port>seventy</port>"
        config.write_text("\n".join(lines) + "\n")
        for args in (["config", "check", "-c", str(config)],
                     ["gateway", "run", "-c", str(config)]):
            result = pvoq(*args)
            assert result.returncode == 2
            errors = result.stderr.strip().splitlines()
            assert len(errors) == 1
            assert f"{config}:{index + 1}: config.listeners.listener.port: " in errors[0]
            assert "seventy" in errors[0]

    def test_malformed_xml_is_reported_with_its_line(self, deployment: Deployment) -> None:
        """An unclosed element is reported with the line where it was opened."""
        config = deployment.manager_config
        config.write_text(config.read_text().replace("</listeners>", "", 1))
        opened = config.read_text().splitlines().index("  <listeners>") + 1
        result = pvoq("config", "check", "-c", str(config))
        assert result.returncode == 2
        assert f"{config}:{opened}: config.listeners: <listeners> opened on line {opened} " \
            "is not closed" in result.stderr

    def test_wrong_role_is_refused(self, deployment: Deployment) -> None:
        """Running a gateway configuration as a manager is a usage error."""
        result = pvoq("manager", "run", "-c", str(deployment.gateway_config))
        assert result.returncode == 2
        assert "system.role" in result.stderr


class TestOperatorCommands:
    def test_commands_against_a_stopped_appliance_fail_clearly(
            self, deployment: Deployment) -> None:
        """With no running appliance, an operator command says so and exits 1."""
        result = pvoq("cli", "-c", str(deployment.manager_config), "quarantine", "list")
        assert result.returncode == 1
        assert "is not running" in result.stderr

    def test_quarantine_list_show_and_errors(self, running: Deployment) -> None:
        """list shows held mail; show prints the envelope; unknown MIDs exit 1."""
        running.send(subject="confidential plan", body="x")
        from pvoq.testing.localdeploy import wait_for
        mid = wait_for("quarantined", running.quarantined)[0]["id"]
        cfg = str(running.manager_config)
        listed = pvoq("cli", "-c", cfg, "quarantine", "list")
        assert listed.returncode == 0
        assert "confidential plan" in listed.stdout and "Policy" in listed.stdout
        shown = pvoq("cli", "-c", cfg, "quarantine", "show", str(mid))
        assert shown.returncode == 0
        assert "Envelope rcpt:     [0] bob@example.com" in shown.stdout
        missing = pvoq("cli", "-c", cfg, "quarantine", "release", "999999")
        assert missing.returncode == 1
        assert "No message with MID 999999" in missing.stderr
        status = pvoq("cli", "-c", cfg, "status")
        assert "System status: Online" in status.stdout
        tophosts = pvoq("cli", "-c", str(running.gateway_config), "tophosts")
        assert "Hosts marked with '*' were down as of the last delivery attempt." in tophosts.stdout
