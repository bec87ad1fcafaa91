"""mail_logs rollovers while mail flows, seen through the manager's log subscription.

A real gateway with its SSH command service and small mail_logs files, a real
manager pulling them every 0.3 s. While messages flow through the gateway its
mail_logs rolls over by size, by `rollovernow`, and by logrotate's way (an
outside rename to `mail_logs.1`, then SIGHUP), and the manager is stopped
(SIGTERM) and started again. Afterwards every line of every gateway file (the
rolled `.s` files, `mail_logs.1`, the current one) is in the manager's copy
exactly once, in order, and each message's lines are there once.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvoq.logsub.reader import log_files
from pvoq.testing.localdeploy import GATEWAY, Deployment, wait_for

MESSAGES = 48
SUBSCRIPTION = """\
  <log_subscription>
    <interval_seconds>0.3</interval_seconds>
    <chunk_lines>40</chunk_lines>
  </log_subscription>
</config>"""
LOGS = """\
  <logs>
    <log>
      <name>mail_logs</name>
      <max_file_size>8K</max_file_size>
      <max_files>100000</max_files>
    </log>
  </logs>
</config>"""


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def subscribed(tmp_path: Path) -> Iterator[Deployment]:
    """A gateway whose mail_logs rolls at 8K; a manager that pulls it every 0.3 s."""
    dep = Deployment(tmp_path / "deploy", retry_min_s=0.5, retry_max_s=2.0, ssh=True)
    dep.init()
    dep.manager_config.write_text(dep.manager_config.read_text().replace("</config>",
                                                                         SUBSCRIPTION))
    dep.gateway_config.write_text(dep.gateway_config.read_text().replace("</config>", LOGS))
    try:
        dep.start()
        token = dep.admin(dep.gateway_config, "ssh.token")["data"]["token"]
        added = _cli(dep.manager_config, "gateway", "add", GATEWAY, "--host", dep.ip,
                     "--ssh-port", str(dep.ports["gateway_ssh"]), "--token", token)
        assert added.returncode == 0, added.stderr
        yield dep
    finally:
        dep.stop_all()


def _gateway_files(dep: Deployment) -> list[Path]:
    """The gateway's mail_logs files in the order the subscription reads them."""
    return [path for path, _ in log_files(dep.root / "gateway" / "data" / "logs")]


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _copy(dep: Deployment) -> list[str]:
    path = dep.root / "manager" / "data" / "gateway_logs" / GATEWAY / "mail_logs"
    return _read_lines(path) if path.exists() else []


def _pull_until(dep: Deployment, marker: str) -> list[str]:
    """Pull now, again and again (bounded), until *marker* is in the manager's copy."""
    def pulled() -> list[str] | None:
        dep.admin(dep.manager_config, "logsub.pull")
        copy = _copy(dep)
        return copy if any(marker in line for line in copy) else None
    found: list[str] = wait_for(f"{marker!r} in the manager's copy", pulled, timeout_s=120,
                                interval_s=0.3)
    return found


def test_every_rolled_line_reaches_the_manager_exactly_once(subscribed: Deployment) -> None:
    dep = subscribed
    logs = dep.root / "gateway" / "data" / "logs"
    sent: list[str] = []
    errors: list[BaseException] = []

    def send_all() -> None:
        try:
            for n in range(MESSAGES):
                dep.send(subject=f"flowing {n}", body=f"message {n}\n" + "text line\n" * 20)
                sent.append(f"flowing {n}")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def reached(count: int) -> None:
        wait_for(f"{count} messages sent", lambda: len(sent) >= count or errors,
                 timeout_s=240)
        assert errors == []

    sender = threading.Thread(target=send_all)
    sender.start()
    try:
        # 1. on demand, while mail flows (and by size all along)
        reached(MESSAGES // 4)
        done = _cli(dep.gateway_config, "rollovernow")
        assert done.returncode == 0, done.stderr

        # 2. logrotate's way: an outside rename to a name the subscription does not make,
        #    then SIGHUP; the lines written into mail_logs.1 up to the SIGHUP must arrive
        reached(MESSAGES // 2)
        moved = logs / "mail_logs.1"
        os.rename(logs / "mail_logs", moved)
        os.kill(dep.procs["gateway"].pid, signal.SIGHUP)
        wait_for("a new mail_logs after SIGHUP", (logs / "mail_logs").exists)

        # 3. the manager stopped in the middle of it all, then started again
        reached(3 * MESSAGES // 4)
        assert dep.stop("manager") == 0
        dep.start_manager()
    finally:
        sender.join(300)
    assert errors == []
    assert len(sent) == MESSAGES
    wait_for("every message at the sink", lambda: len(dep.delivered()) >= MESSAGES,
             timeout_s=240)
    dep.admin(dep.gateway_config, "status")  # a turn of the loop: what was logged is written

    last = f'Subject "flowing {MESSAGES - 1}"'
    copy = _pull_until(dep, last)

    files = _gateway_files(dep)
    names = [p.name for p in files]
    assert "mail_logs.1" in names and names[-1] == "mail_logs"
    rolled = [n for n in names if n.endswith(".s")]
    assert len(rolled) > 2, names   # rollovernow, and the rest by size
    everything: list[str] = []
    for path in files:
        lines = _read_lines(path)
        # each file's lines are in the copy in the file's order, one after the other
        everything += lines
    assert copy == everything[:len(copy)]   # in order, none twice, none missing
    # what is not in the copy yet was written after the last pull: no mail in it
    assert not [x for x in everything[len(copy):] if "MID " in x]
    # compared as multisets too: every line of the files that hold mail, exactly once
    wanted = collections.Counter(everything[:len(copy)])
    assert collections.Counter(copy) == wanted
    # the lines of logrotate's file are all there, once each, in order
    in_moved = _read_lines(moved)
    at = copy.index(in_moved[0])
    assert copy[at:at + len(in_moved)] == in_moved
    assert in_moved[-1].endswith("Logfile rolled over")

    # per message: one Start MID, one Subject line per message sent, none twice
    starts = [x for x in copy if " Info: Start MID " in x]
    assert len(starts) == MESSAGES
    subjects = collections.Counter(x.split('Subject "', 1)[1].rstrip('"')
                                   for x in copy if ' Subject "flowing ' in x)
    assert subjects == dict.fromkeys(sent, 1)
    per_mid = collections.Counter(x for x in copy if " MID " in x)
    assert [x for x, n in per_mid.items() if n > 1] == []
    begins = sum(x.endswith("Begin Logfile") for x in copy)
    assert begins == len(files)  # every file's first line, from the first file on
