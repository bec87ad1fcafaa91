"""Ingest: public SMTP → fsync'd spool → filters → queued, against a bare aiosmtpd sink.

Postfix's `smtp-source` sends N messages of 10 KB over C concurrent
connections (a new connection per message, as mail arrives from the
Internet) to:

- the reference: a bare aiosmtpd server that answers 250 and keeps nothing
  (`bench/reference_sink.py`, its own process);
- a real `pvoq gateway` process: each message is written and fsync'd to the
  spool before its 250, then runs through the scan pipeline and is routed to
  its delivery queue (delivery is suspended, so the figure is ingest alone).
  The clock stops when smtp-source is done *and* the pipeline has routed
  every message.

Both in one run, same machine, in alternating rounds (the sink, then a fresh
gateway; five rounds by default) because this machine's speed drifts by a
quarter within a minute. The load average is printed first and after each
round (the ratio means little on a loaded machine). Last line, medians over
the rounds:
`RESULT ingest <msgs/s> msgs/s ratio=<pvoq ÷ bare sink of the same round>`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _mailbench import deployment

from pvoq.testing.localdeploy import Deployment, free_port, wait_for

DEADLINE_S = 600


def smtp_source() -> str:
    for candidate in (shutil.which("smtp-source"), "/usr/sbin/smtp-source"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise SystemExit("smtp-source not found: apt-get install postfix (see .ci/run)")


def run_source(port: int, messages: int, sessions: int, size: int) -> float:
    start = time.perf_counter()
    subprocess.run([smtp_source(), "-s", str(sessions), "-m", str(messages), "-l", str(size),
                    "-f", "alice@sender.example", "-t", "bob@example.com",
                    f"127.0.0.1:{port}"], check=True, timeout=DEADLINE_S)
    return time.perf_counter() - start


def wait_routed(dep: Deployment, messages: int) -> None:
    """Until the gateway's pipeline has routed *messages* (delivery is suspended)."""
    def routed() -> bool:
        status = dep.admin(dep.gateway_config, "status")["data"]
        return (status["messages_in_work_queue"] == 0
                and status["messages_in_queue"] >= messages)

    wait_for("the pipeline to route every message", routed, timeout_s=DEADLINE_S,
             interval_s=0.05)


def gateway_round(root: Path, messages: int, sessions: int, size: int) -> tuple[float, float]:
    """One fresh gateway: (msgs/s until every message is routed, msgs/s of SMTP alone)."""
    # Every session comes from 127.0.0.1: the public listener's $ACCEPTED policy takes
    # them all (a generated HAT allows DEFAULT_MAX_CONN_PER_IP per address).
    dep = deployment(root, sessions)
    try:
        dep.start_gateway()
        dep.admin(dep.gateway_config, "suspenddel")
        start = time.perf_counter()
        received_s = run_source(dep.ports["gateway_smtp"], messages, sessions, size)
        wait_routed(dep, messages)
        return messages / (time.perf_counter() - start), messages / received_s
    finally:
        dep.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--size", type=int, default=10_240)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="pvoq-bench-ingest-"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, str(Path(__file__).with_name("reference_sink.py")),
                             str(sink_port)], stdout=subprocess.PIPE, env=env)
    ours: list[float] = []
    ratios: list[float] = []
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == b"ready"
        load = os.getloadavg()
        print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 CPUs)")
        print(f"smtp-source: {args.messages} messages of {args.size} bytes, "
              f"{args.sessions} sessions, a new connection per message; "
              f"{args.rounds} rounds, each the bare sink then a fresh gateway")
        for n in range(1, args.rounds + 1):
            reference = args.messages / run_source(sink_port, args.messages, args.sessions,
                                                   args.size)
            rate, smtp_rate = gateway_round(root / f"round{n}", args.messages, args.sessions,
                                            args.size)
            ours.append(rate)
            ratios.append(rate / reference)
            print(f"round {n}: bare aiosmtpd sink (keeps nothing) {reference:7.1f} msgs/s; "
                  f"pvoq gateway (fsync'd spool, filters, routed) {rate:7.1f} msgs/s "
                  f"(SMTP alone {smtp_rate:.1f}); ratio {rate / reference:.2f}; "
                  f"load average {os.getloadavg()[0]:.2f}")
        print(f"RESULT ingest {statistics.median(ours):.1f} msgs/s "
              f"ratio={statistics.median(ratios):.2f}")
    finally:
        sink.terminate()
        sink.wait(10)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
