"""The manager asks the gateway over SSH where to deliver releases (real processes)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvoq.testing.localdeploy import GATEWAY, Deployment, free_port, wait_for


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def ssh_running(tmp_path: Path) -> Iterator[Deployment]:
    """A deployment whose gateway runs its SSH command service."""
    dep = Deployment(tmp_path / "deploy", retry_min_s=0.5, retry_max_s=2.0, ssh=True)
    dep.init()
    try:
        dep.start()
        yield dep
    finally:
        dep.stop_all()


def _add_gateway(dep: Deployment, *extra: str) -> str:
    token = dep.admin(dep.gateway_config, "ssh.token")["data"]["token"]
    added = _cli(dep.manager_config, "gateway", "add", GATEWAY, "--host", dep.ip,
                 "--ssh-port", str(dep.ports["gateway_ssh"]), "--token", token, *extra)
    assert added.returncode == 0, added.stderr
    return added.stdout


def _quarantine_and_release(dep: Deployment, subject: str) -> None:
    before = {m["id"] for m in dep.quarantined()}
    dep.send(subject=f"Confidential {subject}", body=subject)
    record = wait_for("the message in quarantine", lambda: next(
        (m for m in dep.quarantined() if m["id"] not in before), None))
    dep.admin(dep.manager_config, "quarantine.release", {"mid": record["id"]})


def _log(dep: Deployment, role: str) -> str:
    return "\n".join(dep.mail_logs(role))


def _logged(dep: Deployment, role: str, text: str) -> bool:
    """Wait (bounded) until *text* is in *role*'s mail_logs: lines are flushed per turn."""
    return bool(wait_for(f"{text!r} in mail_logs", lambda: text in _log(dep, role)))


class TestListenerLookup:
    def test_release_follows_the_cpq_listener_to_its_new_port(
            self, ssh_running: Deployment) -> None:
        """After the gateway's cpq_listener moves, the next release finds it over SSH."""
        dep = ssh_running
        out = _add_gateway(dep)
        shown = dep.admin(dep.gateway_config, "ssh.show")["data"]["fingerprint"]
        assert f"Host key fingerprint: {shown} (first use: pinned)" in out
        assert "installed with the one-time token" in out
        old_port = dep.ports["gateway_cpq"]
        assert f"port {old_port}" in out

        _quarantine_and_release(dep, "first")
        wait_for("the first release at the sink", lambda: len(dep.delivered()) == 1)
        assert _logged(dep, "manager", f"SSH lookup of {GATEWAY}: PVO listener on interface "
                       f"Incoming Mail (127.0.0.1) port {old_port}")

        new_port = free_port()
        text = dep.gateway_config.read_text()
        assert text.count(f"<port>{old_port}</port>") == 2  # the listener and the PVO settings
        dep.gateway_config.write_text(text.replace(f"<port>{old_port}</port>",
                                                   f"<port>{new_port}</port>"))
        reloaded = _cli(dep.gateway_config, "reload")
        assert reloaded.returncode == 0, reloaded.stderr
        assert _logged(dep, "gateway",
                       f"Listener cpq_listener (CPQ) listening on 127.0.0.1 port {new_port}")

        _quarantine_and_release(dep, "second")
        wait_for("the second release at the sink", lambda: len(dep.delivered()) == 2)
        assert _logged(dep, "manager", f"delivery to 127.0.0.1 port {old_port} failed, "
                       "asking the gateway again")
        assert _logged(dep, "manager", f"SSH lookup of {GATEWAY}: PVO listener on interface "
                       f"Incoming Mail (127.0.0.1) port {new_port}")
        assert "application fault" not in _log(dep, "manager")


class TestLookupFailure:
    def test_wrong_host_key_keeps_the_release_queued_until_fixed(
            self, ssh_running: Deployment) -> None:
        """A host key mismatch is an application fault; the release waits, then goes."""
        dep = ssh_running
        _add_gateway(dep)
        dep.stop("gateway")
        for key in (dep.root / "gateway" / "data" / "ssh").glob("ssh_host_ed25519_key*"):
            key.unlink()
        dep.start_gateway()
        new_fp = dep.admin(dep.gateway_config, "ssh.show")["data"]["fingerprint"]

        _quarantine_and_release(dep, "waiting")
        line = wait_for("the application fault", lambda: next(
            (x for x in dep.mail_logs("manager") if "application fault" in x), None))
        assert re.search(
            rf"Critical: An application fault occurred: \('ssh lookup of {GATEWAY} failed: "
            rf"host key mismatch \(pinned SHA256:\S+, offered {re.escape(new_fp)}\)'\)$", line)
        hosts = dep.admin(dep.manager_config, "tophosts")["data"]["hosts"]
        release = next(h for h in hosts if h["host"] == "the.cpq.release.host")
        assert release["active_rcpts"] == 1
        assert dep.delivered() == []
        listed = _cli(dep.manager_config, "gateway", "list")
        assert "FAULT: host key mismatch" in listed.stdout

        refused = _cli(dep.manager_config, "gateway", "add", GATEWAY, "--host", dep.ip,
                       "--ssh-port", str(dep.ports["gateway_ssh"]))
        assert refused.returncode == 1
        assert "host key mismatch" in refused.stderr and "--replace" in refused.stderr

        fixed = _cli(dep.manager_config, "gateway", "add", GATEWAY, "--host", dep.ip,
                     "--ssh-port", str(dep.ports["gateway_ssh"]), "--replace",
                     "--fingerprint", new_fp)
        assert fixed.returncode == 0, fixed.stderr
        assert f"{new_fp} (replaced the pinned key)" in fixed.stdout
        wait_for("the release at the sink", lambda: len(dep.delivered()) == 1)
        assert _logged(dep, "manager",
                       f"SSH lookup of {GATEWAY} succeeded: application fault cleared")
