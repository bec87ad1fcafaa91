"""One appliance per data directory, and what `run` tells the operator.

Real processes: `pvoq manager run` and `pvoq gateway run` print one line when ready
(every listener, SSH, metrics, the admin socket) and one when stopped; a second
process on the same data directory is refused, naming the directory and the PID
that holds it, and leaves the first one's admin socket alone; a lock file left by
a SIGKILLed run does not block the next start.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvoq import __version__
from pvoq.config.loader import load_config
from pvoq.testing.localdeploy import GATEWAY, MANAGER, Deployment, wait_for


@pytest.fixture
def dep(tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(tmp_path / "d", ssh=True, metrics=True)
    dep.init()
    try:
        yield dep
    finally:
        dep.stop_all()


def output(dep: Deployment, name: str) -> list[str]:
    return (dep.root / f"{name}.out").read_text(errors="replace").splitlines()


def run_second(config: Path, role: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", role, "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=60)


def test_ready_and_stopped_lines_say_what_listens_where(dep: Deployment) -> None:
    dep.start()
    pid = dep.procs["gateway"].pid
    gateway = load_config(dep.gateway_config)
    # the admin socket answers a moment before the line is printed
    ready = wait_for("the gateway's ready line",
                     lambda: [line for line in output(dep, "gateway") if " ready " in line])
    assert ready == [
        f"pvoq {__version__} gateway {GATEWAY} ready (pid {pid}): "
        f"IncomingMail (SMTP) 127.0.0.1:{dep.ports['gateway_smtp']}; "
        f"cpq_listener (CPQ) 127.0.0.1:{dep.ports['gateway_cpq']}; "
        f"SSH 127.0.0.1:{dep.ports['gateway_ssh']}; "
        f"metrics 127.0.0.1:{dep.ports['gateway_metrics']}/metrics; "
        f"admin socket {gateway.admin_socket}"], output(dep, "gateway")
    manager_ready = wait_for("the manager's ready line", lambda: [
        line for line in output(dep, "manager") if " ready " in line])
    assert len(manager_ready) == 1
    assert re.fullmatch(
        rf"pvoq \S+ manager {re.escape(MANAGER)} ready \(pid \d+\): cpq_listener \(CPQ\) "
        rf"127\.0\.0\.1:{dep.ports['manager_cpq']}; metrics "
        rf"127\.0\.0\.1:{dep.ports['manager_metrics']}/metrics; admin socket \S+admin\.sock",
        manager_ready[0])
    assert dep.stop("gateway") == 0
    assert output(dep, "gateway")[-1] == f"pvoq gateway {GATEWAY} stopped (pid {pid})"


def test_a_session_open_at_stop_is_closed_and_logged_before_the_logs_close(
        dep: Deployment) -> None:
    dep.start()
    with socket.create_connection(("127.0.0.1", dep.ports["gateway_smtp"]), timeout=10) as s:
        assert s.recv(512).startswith(b"220")
        wait_for("the session's ICID", lambda: any(
            "New SMTP ICID" in line for line in dep.mail_logs("gateway")))
        assert dep.stop("gateway") == 0
        assert s.recv(512) == b""  # closed by the gateway as it stopped
    lines = dep.mail_logs("gateway")
    icid = next(re.search(r"New SMTP ICID (\d+)", x).group(1)  # type: ignore[union-attr]
                for x in lines if "New SMTP ICID" in x)
    closed = [i for i, x in enumerate(lines) if x.endswith(f"ICID {icid} close")]
    stopped = [i for i, x in enumerate(lines) if x.endswith(f"gateway {GATEWAY} stopped")]
    assert closed and stopped and closed[0] < stopped[0], lines[-5:]
    assert not [x for x in output(dep, "gateway") if "is closed" in x or "Traceback" in x]


def test_a_second_process_on_the_data_directory_is_refused(dep: Deployment) -> None:
    dep.start_manager()
    first = dep.procs["manager"].pid
    config = load_config(dep.manager_config)
    second = run_second(dep.manager_config, "manager")
    assert second.returncode == 1
    assert second.stderr.strip() == (
        f"pvoq: manager cannot start: data directory {config.data_dir} is in use by another "
        f"pvoq process (PID {first}, holding {config.data_dir / 'pvoq.lock'}); stop it first, "
        "or give this one another <data_dir>")
    assert " ready " not in second.stdout
    # the first one runs on, its admin socket in place
    assert config.admin_socket.exists()
    assert dep.admin(dep.manager_config, "status")["ok"]
    assert dep.procs["manager"].poll() is None


def test_a_lock_left_by_a_killed_run_does_not_block_a_restart(dep: Deployment) -> None:
    dep.start_manager()
    killed = dep.procs["manager"].pid
    lock = load_config(dep.manager_config).data_dir / "pvoq.lock"
    assert dep.stop("manager", sig=signal.SIGKILL) == -signal.SIGKILL
    assert lock.read_text().strip() == str(killed)  # the file stays; the kernel's lock went
    dep.start_manager()
    restarted = dep.procs["manager"].pid
    wait_for("the new PID in the lock file", lambda: lock.read_text().strip() == str(restarted))
    assert dep.admin(dep.manager_config, "status")["ok"]
    refused = run_second(dep.manager_config, "manager")
    assert refused.returncode == 1 and f"(PID {restarted}," in refused.stderr
