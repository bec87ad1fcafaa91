"""High availability: two manager processes on one real PostgreSQL database, a gateway that
lists both, and a third manager from the same CA that the gateway does not list.

Everything is real: processes, sockets, mutual TLS, PostgreSQL. The first manager is
stopped by its PID; caught mail then goes to the second, which releases both the mail
the first stored and its own; the unlisted manager's release is refused.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvoq.testing.localdeploy import Deployment, wait_for
from pvoq.testing.pgserver import PostgresServer


@pytest.fixture
def pair(tmp_path: Path, postgres: PostgresServer) -> Iterator[Deployment]:
    dep = Deployment(tmp_path / "deploy", retry_min_s=0.5, retry_max_s=2.0, managers=2,
                     database_url=postgres.create_database("several_managers"))
    dep.init()
    try:
        dep.start()
        yield dep
    finally:
        dep.stop_all()


def held(dep: Deployment, manager: str, subject: str) -> dict | None:
    for message in dep.quarantined(manager):
        if message.get("subject") == subject:
            return message
    return None


def delivered_subjects(dep: Deployment) -> list[str]:
    found = []
    for _, raw in dep.delivered():
        match = re.search(rb"^Subject: (.*?)\r?$", raw, re.M)
        found.append(match.group(1).decode() if match else "")
    return found


def pvo_check(dep: Deployment) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(dep.gateway_config),
                           "pvo", "check"], capture_output=True, text=True, timeout=60)


def logged(dep: Deployment, role: str, pattern: str) -> bool:
    return any(re.search(pattern, line) for line in dep.mail_logs(role))


def test_failover_release_from_either_and_an_unlisted_manager_refused(
        pair: Deployment) -> None:
    dep = pair
    first_port, second_port = dep.ports["manager_cpq"], dep.ports["manager2_cpq"]

    # The readiness check asks each manager, a line each.
    check = pvo_check(dep)
    assert check.returncode == 0, check.stderr
    lines = check.stdout.splitlines()
    assert lines[0] == "Ready: all 2 managers ready"
    assert lines[1].startswith(f"Ready: the manager manager.pvoq.test at 127.0.0.1:{first_port} "
                               "answered: ")
    assert lines[2].startswith(f"Ready: the manager manager2.pvoq.test at "
                               f"127.0.0.1:{second_port} answered: ")

    # Both up: the first listed manager takes the caught mail; both see it (one database).
    dep.send(subject="confidential one", body="first")
    one = wait_for("held on manager", lambda: held(dep, "manager", "confidential one"))
    assert wait_for("seen by manager2", lambda: held(dep, "manager2", "confidential one"))
    assert logged(dep, "gateway", rf"CPQ peer manager\.pvoq\.test \(127\.0\.0\.1:{first_port}\) "
                                  r"verified \(manager 1 of 2\)")

    # The first manager stops (SIGTERM to its PID): the next caught mail goes to the second.
    first = dep.procs["manager"]
    dep.stop("manager")
    assert first.returncode is not None  # it exited
    check = pvo_check(dep)
    assert check.returncode == 1
    err = check.stderr.splitlines()
    assert err[0] == "Not ready: 1 of 2 managers ready"
    assert err[1].startswith(f"Not ready: the manager manager.pvoq.test at 127.0.0.1:{first_port}"
                             f" cannot be used: connection to 127.0.0.1:{first_port} failed")
    assert err[2].startswith("Ready: the manager manager2.pvoq.test")
    dep.send(subject="confidential two", body="second")
    two = wait_for("held via manager2", lambda: held(dep, "manager2", "confidential two"))
    assert two["id"] != one["id"]
    assert logged(dep, "gateway", rf"CPQ peer manager2\.pvoq\.test \(127\.0\.0\.1:{second_port}\)"
                                  r" verified \(manager 2 of 2\)")
    assert logged(dep, "gateway", rf"CPQ peer manager\.pvoq\.test \(127\.0\.0\.1:{first_port}\) "
                                  r"failed: connection to")
    assert logged(dep, "manager2", rf"MID {two['id']} received from the ESA")
    status = dep.admin(dep.gateway_config, "hoststatus", {"host": "the.cpq.host"})["data"]
    assert not status["down"]  # a manager answered
    first, second = status["peers"]
    assert first["peer"] == f"manager.pvoq.test (127.0.0.1:{first_port})"
    assert first["failures"] >= 1 and "connection to 127.0.0.1" in first["last_error"]
    assert (second["peer"], second["failures"]) == (
        f"manager2.pvoq.test (127.0.0.1:{second_port})", 0)
    shown = subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(dep.gateway_config),
                            "hoststatus", "the.cpq.host"], capture_output=True, text=True,
                           timeout=60).stdout
    assert re.search(r"Manager manager\.pvoq\.test \(127\.0\.0\.1:\d+\)\s+\d+ failures, "
                     r"next try in \d+s: connection to", shown), shown
    assert re.search(r"Manager manager2\.pvoq\.test \(127\.0\.0\.1:\d+\)\s+up$", shown, re.M)

    # The second manager releases both: its own and the one the first stored.
    for message in (two, one):
        dep.admin(dep.config_of("manager2"), "quarantine.release", {"mid": message["id"]})
    wait_for("both released", lambda: sorted(delivered_subjects(dep)) == [
        "confidential one", "confidential two"])
    assert logged(dep, "gateway", r"received from the SMA 127\.0\.0\.1 \(MID originally \d+\) "
                                  r"on release from central quarantine")

    # A manager whose certificate is from the same CA but which the gateway does not list
    # (sharing the database, it sees the held mail) is refused when it releases.
    dep.init_manager("manager3")
    dep.start_manager("manager3")
    dep.send(subject="confidential three", body="third")
    three = wait_for("held", lambda: held(dep, "manager3", "confidential three"))
    dep.admin(dep.config_of("manager3"), "quarantine.release", {"mid": three["id"]})
    wait_for("the gateway refuses manager3", lambda: logged(
        dep, "gateway", r"CPQ release refused: peer 127\.0\.0\.1 presented a certificate of "
                        r"'manager3\.pvoq\.test', this gateway's managers are "
                        r"'manager\.pvoq\.test', 'manager2\.pvoq\.test'"))
    wait_for("manager3 holds it", lambda: logged(
        dep, "manager3", rf"MID {three['id']} RID \[0\] held: the\.cpq\.release\.host refused "
                         r"it permanently \('554 5\.7\.1 manager3\.pvoq\.test is not this "
                         r"gateway's manager'\)"))
    assert sorted(delivered_subjects(dep)) == ["confidential one", "confidential two"]
