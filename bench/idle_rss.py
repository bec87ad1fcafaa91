"""Idle memory of a gateway and of a manager, each with its scanner processes.

Starts a real deployment on loopback (gateway with its scanner processes, a
manager, a sink) as `pvoq init` configures them: the web console, `/metrics`
and the SSH command service on, the gateway linked to the manager over SSH
(`pvoq cli gateway add`) so that the manager's log subscription pulls its
logs, sends one message each way so that the mail paths are loaded (a clean
message delivered, one quarantined), scrapes `/metrics` once, lets them
settle, then samples every process of each appliance: the appliance's own
process and its descendants (the scanner processes).

The console is built on its first connection: the figure judged is the idle
appliance whose console nobody has opened; the script then opens one console
page on each appliance, lets them settle again and prints that figure too.

Figures per appliance, in MB (10^6 bytes):
- RSS: the sum of the processes' resident set sizes (shared pages counted in
  each process: the conservative figure the target is judged on);
- PSS: the proportional set size sum (shared pages divided among sharers).

Reference measured in the same run: a bare `python3 -c` interpreter's RSS.
The load average is printed first (RSS hardly depends on it).
Target: each appliance's RSS <= 80 MB. Last line:

    RESULT idle_rss <worst appliance RSS> MB ratio=<80 / that>
"""

from __future__ import annotations

import argparse
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _mailbench import status_kib, tree

from pvoq.testing.localdeploy import Deployment, wait_for

TARGET_MB = 80.0


def _rss_kb(pid: int) -> int:
    return status_kib(pid, "VmRSS") or 0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sample(pid: int) -> tuple[float, float, int]:
    """(RSS MB, PSS MB, process count) of *pid*'s tree."""
    pids = tree(pid)
    rss = sum(_rss_kb(p) for p in pids) * 1024 / 1e6
    pss = sum(_pss_kb(p) for p in pids) * 1024 / 1e6
    return rss, pss, len(pids)


def bare_python_mb() -> float:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        return _rss_kb(proc.pid) * 1024 / 1e6
    finally:
        proc.kill()
        proc.wait()


def report(deploy: Deployment, samples: int, when: str) -> float:
    """Print each appliance's figures; the worst RSS."""
    worst = 0.0
    for name in ("gateway", "manager"):
        pid = deploy.procs[name].pid
        rows = [sample(pid) for _ in range(samples) if not time.sleep(0.2)]
        rss = max(r[0] for r in rows)
        pss = max(r[1] for r in rows)
        count = rows[-1][2]
        worst = max(worst, rss)
        each = ", ".join(f"{_rss_kb(p) / 1000:.1f}" for p in tree(pid))
        print(f"{when:14} {name:8} processes={count} rss={rss:.1f} MB pss={pss:.1f} MB "
              f"(each, MB: {each}) target<={TARGET_MB:.0f} MB")
    return worst


def fetch(url: str, context: ssl.SSLContext | None = None) -> int:
    with urllib.request.urlopen(url, timeout=30, context=context) as response:
        response.read()
        return int(response.status)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=5.0, help="idle seconds before sampling")
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--bare", action="store_true",
                        help="without the console, /metrics and SSH (the minimal appliance)")
    args = parser.parse_args()

    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    reference = bare_python_mb()
    with tempfile.TemporaryDirectory(prefix="pvoq-idle-") as tmp:
        full = not args.bare
        deploy = Deployment(Path(tmp), console=full, metrics=full, ssh=full)
        deploy.init()
        try:
            deploy.start()
            if full:
                deploy.add_gateway_over_ssh()
            deploy.send(subject="hello", body="clean mail\n")
            deploy.send(subject="confidential report", body="caught\n")
            wait_for("the clean message downstream", lambda: len(deploy.delivered()) >= 1)
            wait_for("the caught message on the manager", lambda: deploy.quarantined())
            if full:
                for name in ("gateway", "manager"):
                    fetch(f"http://127.0.0.1:{deploy.ports[f'{name}_metrics']}/metrics")
            time.sleep(args.settle)
            worst = report(deploy, args.samples, "idle")
            if full:
                trust = ssl.create_default_context(cafile=str(deploy.ca_file))
                for name in ("gateway", "manager"):
                    fetch(deploy.console_url(name) + "/", trust)
                time.sleep(args.settle)
                browsed = report(deploy, args.samples, "one page open")
                print(f"after one console page on each: worst rss={browsed:.1f} MB "
                      "(not judged: the target is the idle appliance)")
        finally:
            deploy.stop_all()
    print(f"reference bare python interpreter rss={reference:.1f} MB")
    print(f"RESULT idle_rss {worst:.1f} MB ratio={TARGET_MB / worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
