"""Gateway CPU per message: the same ingest against two source trees, alternating.

An A/B of the gateway's own cost that a loaded machine disturbs less than a
rate: Postfix's `smtp-source` sends N messages of 10 KB over C sessions (a
new connection per message) to a fresh `pvoq gateway` (delivery suspended,
as `bench/ingest.py`), and the gateway process's CPU time (user + system,
from /proc, its scanner processes not included) is read before and after,
until the pipeline has routed the last message. Rounds alternate the two
trees (`--a`, `--b`: directories holding the `pvoq` package; A then B, then B
then A, ...). Per round it prints msgs/s, CPU seconds per 1,000 messages of
the whole process and of its event loop's thread, and the load average.

With `--quarantine` the path is the quarantine one instead (`bench/quarantine_e2e.py`'s):
a real manager too, the messages carry the subject the content filter sends to the
Policy quarantine, and the round ends when the manager holds them all. Both the gateway
and the manager run the round's tree (the manager's CPQ listener is the same SMTP server
core); it prints the gateway's CPU per message by thread (event loop, spool writer,
others), its scanner processes', and the manager's.

Last line: `RESULT gateway_cpu <B's median CPU s per 1,000 msgs> s ratio=<B ÷ A>`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _mailbench import CAUGHT_SUBJECT, children, deployment, held_gauge, wait_until
from _mailbench import run_source as run_caught
from ingest import run_source, wait_routed

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(path: str) -> float:
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _threads(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of *pid*, by thread name (summed over equal names)."""
    out: dict[str, float] = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = "loop" if task == str(pid) else f.read().strip()
            out[name] = out.get(name, 0.0) + _cpu(f"/proc/{pid}/task/{task}/stat")
        except OSError:
            continue  # a thread that ended meanwhile
    return out


def _tree_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += _cpu(f"/proc/{pid}/stat")
        except OSError:
            continue
    return total


def quarantine_round(root: Path, src: str, messages: int, sessions: int,
                     size: int) -> tuple[float, float, float, str]:
    """(msgs/s, gateway CPU s per 1,000 msgs, its loop's, a line of the other parts)."""
    dep = deployment(root, sessions)
    dep.env["gateway"] = dep.env["manager"] = {"PYTHONPATH": src}
    try:
        dep.start_manager()
        dep.start_gateway()
        gw, mgr = dep.procs["gateway"].pid, dep.procs["manager"].pid
        scanners = children(gw)
        before = (_threads(gw), _tree_cpu(scanners), _cpu(f"/proc/{mgr}/stat"))
        start = time.perf_counter()
        run_caught(dep.ports["gateway_smtp"], messages, sessions, size,
                   sender="quarantine@sender.example", subject=CAUGHT_SUBJECT,
                   deadline_s=600)
        wait_until("the manager to hold every message", lambda: held_gauge(dep), messages,
                   deadline_s=600, interval_s=0.1)
        elapsed = time.perf_counter() - start
        after = (_threads(gw), _tree_cpu(scanners), _cpu(f"/proc/{mgr}/stat"))
        per = 1000 / messages
        threads = {name: (after[0][name] - before[0].get(name, 0.0)) * per
                   for name in after[0]}
        total = sum(threads.values())
        parts = ", ".join(f"{name} {cpu:.3f}" for name, cpu in
                          sorted(threads.items(), key=lambda kv: -kv[1]) if cpu >= 0.005)
        other = (f"gateway threads: {parts}; scanners {(after[1] - before[1]) * per:.3f} s; "
                 f"manager {(after[2] - before[2]) * per:.3f} s")
        return messages / elapsed, total, threads.get("loop", 0.0), other
    finally:
        dep.stop_all()


def one_round(root: Path, src: str, messages: int, sessions: int,
              size: int) -> tuple[float, float, float]:
    """(msgs/s, CPU s per 1,000 msgs of the process, of its main thread)."""
    dep = deployment(root, sessions)
    dep.env["gateway"] = {"PYTHONPATH": src}  # read when the gateway starts
    try:
        dep.start_gateway()
        dep.admin(dep.gateway_config, "suspenddel")
        pid = dep.procs["gateway"].pid
        process, thread = f"/proc/{pid}/stat", f"/proc/{pid}/task/{pid}/stat"
        before = _cpu(process), _cpu(thread)
        start = time.perf_counter()
        run_source(dep.ports["gateway_smtp"], messages, sessions, size)
        wait_routed(dep, messages)
        elapsed = time.perf_counter() - start
        per = 1000 / messages
        return (messages / elapsed, (_cpu(process) - before[0]) * per,
                (_cpu(thread) - before[1]) * per)
    finally:
        dep.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="source tree A (a directory with pvoq/)")
    parser.add_argument("--b", default=str(Path(__file__).resolve().parent.parent / "src"),
                        help="source tree B (default: this checkout's src)")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--size", type=int, default=10_240)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quarantine", action="store_true",
                        help="the quarantine path (a manager too) instead of ingest alone")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pvoq-bench-gwcpu-"))
    results: dict[str, list[tuple[float, float, float]]] = {"A": [], "B": []}
    try:
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 CPUs); "
              f"{args.messages} messages of {args.size} bytes, {args.sessions} sessions",
              flush=True)
        for n in range(args.rounds):
            for name in (("A", "B") if n % 2 == 0 else ("B", "A")):
                src = args.a if name == "A" else args.b
                other = ""
                if args.quarantine:
                    rate, cpu, loop, other = quarantine_round(
                        root / f"{name}{n}", src, args.messages, args.sessions, args.size)
                    other = f"\n    {other}"
                else:
                    rate, cpu, loop = one_round(root / f"{name}{n}", src, args.messages,
                                                args.sessions, args.size)
                results[name].append((rate, cpu, loop))
                print(f"round {n + 1} {name}: {rate:7.1f} msgs/s; CPU per 1,000 msgs "
                      f"{cpu:.3f} s (event loop's thread {loop:.3f} s); load average "
                      f"{os.getloadavg()[0]:.2f}{other}", flush=True)
        medians = {name: [statistics.median(r[i] for r in rows) for i in range(3)]
                   for name, rows in results.items()}
        for name, (rate, cpu, loop) in medians.items():
            print(f"{name}: median {rate:.1f} msgs/s, {cpu:.3f} s CPU per 1,000 msgs "
                  f"(event loop's thread {loop:.3f} s)")
        print(f"RESULT gateway_cpu {medians['B'][1]:.3f} s "
              f"ratio={medians['B'][1] / medians['A'][1]:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
