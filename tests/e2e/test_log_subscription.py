"""The manager's subscription to its gateway's mail_logs, with real processes and real SSH.

A manager killed in the middle of the subscription and started again, and a
gateway's mail_logs renamed away by hand (a rollover: the gateway keeps
writing the renamed file until it restarts with a new one): every line the
gateway wrote is on the manager exactly once, in order.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from logsubsetup import cli, subscribed_deployment

from pvoq.logsub.reader import log_files
from pvoq.testing.localdeploy import GATEWAY, Deployment, wait_for


@pytest.fixture
def subscribed(tmp_path: Path) -> Iterator[Deployment]:
    """A manager that pulls its gateway's log every 0.3 s, 40 lines at a time."""
    with subscribed_deployment(tmp_path, interval_s=0.3, chunk_lines=40) as dep:
        yield dep


def _gateway_lines(dep: Deployment) -> list[str]:
    """Every line the gateway wrote, oldest file first."""
    lines: list[str] = []
    for path, _ in log_files(dep.root / "gateway" / "data" / "logs"):
        lines += path.read_text(errors="replace").splitlines()
    return lines


def _copy(dep: Deployment) -> list[str]:
    path = dep.root / "manager" / "data" / "gateway_logs" / GATEWAY / "mail_logs"
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def _caught_up(dep: Deployment, marker: str) -> list[str] | None:
    copy = _copy(dep)
    return copy if any(marker in line for line in copy) else None


def _send(dep: Deployment, tag: str, count: int) -> None:
    for n in range(count):
        dep.send(subject=f"{tag} {n}", body="clean")


def test_restart_and_rollover_keep_every_line_exactly_once(subscribed: Deployment) -> None:
    dep = subscribed
    _send(dep, "before the restart", 6)
    wait_for("some lines on the manager", lambda: len(_copy(dep)) > 40, timeout_s=60)
    assert dep.stop("manager", sig=signal.SIGKILL) == -signal.SIGKILL
    _send(dep, "while the manager is down", 4)
    dep.start_manager()

    # a rollover by hand: the gateway writes on into the renamed file, then starts a new one
    logs = dep.root / "gateway" / "data" / "logs"
    os.rename(logs / "mail_logs", logs / "mail_logs.@20261130T120000.s")
    _send(dep, "into the renamed file", 3)
    dep.stop("gateway")
    dep.start_gateway()
    _send(dep, "after the rollover", 3)
    wait_for("the last message's lines on the manager",
             lambda: _caught_up(dep, 'Subject "after the rollover 2"'), timeout_s=90)

    copy = _copy(dep)
    everything = _gateway_lines(dep)
    assert copy == everything[:len(copy)]          # in order, none twice, none missing
    later = everything[len(copy):]                 # written after the last pull
    assert all("SSH command" in line or "Subject" not in line for line in later)
    for tag in ("before the restart 5", "while the manager is down 3",
                "into the renamed file 2", "after the rollover 2"):
        assert sum(f'Subject "{tag}"' in line for line in copy) == 1
    assert sum("Begin Logfile" in line for line in copy) == 2

    status = dep.admin(dep.manager_config, "logsub.status")["data"]
    (row,) = status["gateways"]
    assert row["name"] == GATEWAY and row["lines"] >= len(copy)   # pulls go on meanwhile
    assert row["last_pull"] is not None and row["last_line_time"] is not None
    assert os.stat(dep.root / "manager" / "data" / "gateway_logs").st_mode & 0o777 == 0o750
    assert os.stat(dep.root / "manager" / "data" / "gateway_logs" / GATEWAY /
                   "mail_logs").st_mode & 0o777 == 0o640

    shown = cli(dep.manager_config, "logsub", "status")
    assert shown.returncode == 0
    assert re.search(rf"{re.escape(GATEWAY)} \(127\.0\.0\.1\): \d+ lines, last pull ",
                     shown.stdout)
