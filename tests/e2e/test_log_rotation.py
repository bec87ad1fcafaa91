"""mail_logs under load: rollovers by size, by `rollovernow` and by an outside rename plus
SIGHUP (logrotate) while messages flow through a real gateway to a real manager and sink;
afterwards every message's lines are present exactly once across the files, `grep` finds
lines in rolled files and `tail` works right after a rollover. Also `logconfig`."""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from logsubsetup import SMALL_LOGS, add_to_config

from pvoq import __version__
from pvoq.maillog.rollover import log_files, rolled_files
from pvoq.testing.localdeploy import Deployment, wait_for

SENDERS = 4
PER_SENDER = 30
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>\r\n]+>)", re.MULTILINE | re.IGNORECASE)
ID_LINE = re.compile(r"\b(?:MID|ICID|DCID) \d+")


def pvoq(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60)


def texts(path: Path) -> list[str]:
    return [line.split(": ", 1)[1] if ": " in line else line
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]


def every_line(files: list[Path]) -> list[str]:
    found = []
    for path in files:
        found += path.read_text(encoding="utf-8", errors="replace").splitlines()
    return found


def small_logs(deployment: Deployment) -> None:
    for config in (deployment.gateway_config, deployment.manager_config):
        add_to_config(config, SMALL_LOGS)


def assert_markers(path: Path, *, rolled: bool) -> None:
    lines = texts(path)
    assert lines[0] == "Begin Logfile", path.name
    assert lines[1].startswith("Version: pvoq "), path.name
    if rolled:
        assert lines[-1] == "Logfile rolled over", path.name
        assert lines.count("Logfile rolled over") == 1, path.name


@pytest.fixture
def flowing(deployment: Deployment) -> Deployment:
    small_logs(deployment)
    deployment.start()
    return deployment


def test_every_line_once_across_rollovers_under_load(flowing: Deployment) -> None:
    dep = flowing
    gw_logs = dep.root / "gateway" / "data" / "logs"
    mgr_logs = dep.root / "manager" / "data" / "logs"
    sent: list[tuple[str, bool]] = []  # (Message-ID, quarantined?)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def send_many(k: int) -> None:
        try:
            for n in range(PER_SENDER):
                policy = n % 5 == 0
                wire = dep.send(subject=f"{'confidential' if policy else 'hello'} {k}-{n}",
                                body=f"message {k}-{n}\n" + "text line\n" * 20)
                found = MESSAGE_ID.search(wire)
                assert found is not None
                with lock:
                    sent.append((found.group(1).decode(), policy))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send_many, args=(k,)) for k in range(SENDERS)]
    for t in threads:
        t.start()
    total = SENDERS * PER_SENDER

    def reached(count: int) -> None:
        wait_for(f"{count} messages sent", lambda: len(sent) >= count or errors, timeout_s=240)

    # 1. rollovernow on both appliances, while mail flows
    reached(total // 4)
    for config in (dep.gateway_config, dep.manager_config):
        done = pvoq(config, "rollovernow")
        assert done.returncode == 0, done.stderr
        assert re.fullmatch(r"mail_logs rolled over to mail_logs\.@\d{8}T\d{6}(\.\d+)?\.s\.\n",
                            done.stdout), done.stdout
    after = pvoq(dep.gateway_config, "tail", "-n", "4")  # right after a rollover
    assert after.returncode == 0, after.stderr
    assert len(after.stdout.splitlines()) == 4

    # 2. logrotate's way: an outside rename, then SIGHUP
    reached(total // 2)
    moved = gw_logs / "mail_logs.1"
    os.rename(gw_logs / "mail_logs", moved)
    meanwhile = pvoq(dep.gateway_config, "tail", "-n", "2")  # no mail_logs: the rolled files
    assert meanwhile.returncode == 0, meanwhile.stderr
    os.kill(dep.procs["gateway"].pid, signal.SIGHUP)
    wait_for("a new mail_logs after SIGHUP", (gw_logs / "mail_logs").exists)

    # 3. another rollovernow, and rollovers by size all along
    reached(3 * total // 4)
    assert pvoq(dep.gateway_config, "rollovernow", "mail_logs").returncode == 0

    for t in threads:
        t.join(300)
    assert errors == []
    assert len(sent) == total
    clean = sum(1 for _, policy in sent if not policy)
    policy = total - clean
    wait_for("every clean message at the sink", lambda: len(dep.delivered()) >= clean,
             timeout_s=240)
    wait_for("every policy message in quarantine", lambda: len(dep.quarantined()) >= policy,
             timeout_s=240)
    for config in (dep.gateway_config, dep.manager_config):
        dep.admin(config, "status")  # a turn of each event loop: what was logged is written

    # The gateway: rolled files (by size and on demand), logrotate's file, the current one.
    gw_files = log_files(gw_logs, "mail_logs")
    rolled = rolled_files(gw_logs, "mail_logs")
    assert len(rolled) > 3  # two rollovernow and the rest by size
    for path in rolled:
        assert_markers(path, rolled=True)
    assert texts(moved)[-1] == "Logfile rolled over"
    assert_markers(gw_logs / "mail_logs", rolled=False)
    lines = every_line([moved, *gw_files])
    ids = collections.Counter(re.search(r"Message-ID '([^']*)'", x).group(1)  # type: ignore[union-attr]
                              for x in lines if "Message-ID '" in x)
    assert ids == dict.fromkeys((mid for mid, _ in sent), 1)
    starts = [x for x in lines if " Info: Start MID " in x]
    assert len(starts) == total
    repeated = [x for x, n in collections.Counter(
        x for x in lines if ID_LINE.search(x)).items() if n > 1]
    assert repeated == []

    # The manager: every quarantined message's lines once, across its rolled files too.
    mgr_lines = every_line(log_files(mgr_logs, "mail_logs"))
    assert len(rolled_files(mgr_logs, "mail_logs")) >= 1
    received = [x for x in mgr_lines if "received from the ESA" in x]
    assert len(received) == policy
    mgr_ids = collections.Counter(re.search(r"Message-ID '([^']*)'", x).group(1)  # type: ignore[union-attr]
                                  for x in mgr_lines if "Message-ID '" in x)
    assert mgr_ids == dict.fromkeys((mid for mid, p in sent if p), 1)

    # grep reads the rolled files: all but what logrotate's file holds.
    counted = pvoq(dep.gateway_config, "grep", "-c", "-e", "Start MID")
    assert counted.returncode == 0, counted.stderr
    in_moved = sum(1 for x in texts(moved) if x.startswith("Start MID "))
    assert int(counted.stdout) == total - in_moved
    # tail right after a rollover, mail quiet: the rolled file's end, then the new file
    assert pvoq(dep.gateway_config, "rollovernow").returncode == 0
    quiet = pvoq(dep.gateway_config, "tail", "-n", "10")
    assert quiet.returncode == 0, quiet.stderr
    shown = [x.split(": ", 1)[1] for x in quiet.stdout.splitlines()]
    at = shown.index("Logfile rolled over")  # a late line (a connection closed) may follow
    assert shown[at:at + 3] == [
        "Logfile rolled over", "Begin Logfile", f"Version: pvoq {__version__} SN: PVOQ-G-0001"]
    first_id = next(mid for mid, _ in sent)
    hit = pvoq(dep.gateway_config, "grep", "-e", re.escape(f"Message-ID '{first_id}'"))
    assert hit.returncode == 0 and first_id in hit.stdout


def test_logconfig_shows_edits_and_refuses_bad_values(flowing: Deployment) -> None:
    config = flowing.gateway_config
    shown = pvoq(config, "logconfig")
    assert shown.returncode == 0, shown.stderr
    assert "Rollover by file size:  8K (8192 bytes)" in shown.stdout
    assert "Maximum rolled files:   100000" in shown.stdout

    before = config.read_bytes()
    bad = pvoq(config, "logconfig", "edit", "--max-size", "10X")
    assert bad.returncode == 1
    assert "logs.log.max_file_size" in bad.stderr and "not a size" in bad.stderr
    assert config.read_bytes() == before  # refused: the file is as it was

    good = pvoq(config, "logconfig", "edit", "--max-files", "50", "--interval", "3600",
                "--syslog-host", "127.0.0.1", "--syslog-protocol", "tcp")
    assert good.returncode == 0, good.stderr
    data = json.loads(pvoq(config, "logconfig", "--json").stdout)["logs"][0]
    assert (data["max_files"], data["rollover_interval_seconds"], data["max_file_size"]) == (
        50, 3600.0, 8192)
    assert data["syslog"]["host"] == "127.0.0.1" and data["syslog"]["protocol"] == "tcp"
    assert "<max_files>50</max_files>" in config.read_text()
    assert before.split(b"<logs>")[0] == config.read_bytes().split(b"<logs>")[0]

    off = pvoq(config, "logconfig", "edit", "--no-syslog")
    assert off.returncode == 0, off.stderr
    assert json.loads(pvoq(config, "logconfig", "--json").stdout)["logs"][0]["syslog"] is None
    unknown = pvoq(config, "rollovernow", "ftpd_logs")
    assert unknown.returncode == 2
