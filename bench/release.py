"""Release: one bulk release of N held messages, manager → CPQ → gateway → smtp-sink.

First N messages of 10 KB are quarantined the way mail arrives: Postfix's
`smtp-source` (16 sessions, a new connection per message, each to its own
numbered recipient) sends them to a real `pvoq gateway`, whose content filter
catches their subject and ships them over CPQ to a real `pvoq manager`. That
phase is timed too, from the first send until the manager's quarantine
search finds all N held: the quarantine transfer rate, the reference.

Then one bulk action releases everything the search finds (the admin socket's
`quarantine.bulk`, what `pvoq cli quarantine bulk release` sends). The
manager sends each released message back over CPQ to its gateway, which
delivers it to Postfix's `smtp-sink` downstream. The clock starts with the
bulk action and stops when smtp-sink has taken the last message; every
numbered recipient must arrive exactly once and the quarantine must be empty.

It also reads the CPU time (utime + stime, `/proc/<pid>/task/*/stat`) of the
manager and of the gateway with its scanner processes over the release phase
and over the release phase plus its settling (until the gateway's spool is
empty: every release receipt acknowledged by the manager), and prints it per
released message: the steadier figure when the machine is shared.

Bounded: N messages, a deadline per phase (on timeout it says how far it got
and exits 2). Loopback only; every process it starts it stops by PID; its
temporary directory is removed.

Last line: `RESULT release <msgs/s> msgs/s ratio=<release ÷ quarantine transfer>`.
"""

from __future__ import annotations

import os
import time
from collections import Counter

from _mailbench import (
    HELD,
    BenchFailure,
    SmtpSink,
    bench_root,
    bench_run,
    bulk_release,
    deployment,
    exactly_once,
    held_count,
    held_recipients,
    load_parser,
    print_load,
    quarantine_phase,
    recipient_numbers,
    tree,
    wait_until,
)

from pvoq.testing.localdeploy import Deployment

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> Counter[str]:
    """CPU seconds of the processes *pids* so far, by thread (`main`, or its name with
    any number dropped: the threads of one pool together), and in all (`all`)."""
    used: Counter[str] = Counter()
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            name = stat[stat.find(b"(") + 1:stat.rfind(b")")].decode(errors="replace")
            fields = stat[stat.rfind(b")") + 2:].split()
            seconds = (int(fields[11]) + int(fields[12])) / TICK
            used["all"] += seconds
            if int(task) == pid:
                name = "main" if pid == pids[0] else "children"
            elif pid != pids[0]:
                name = "children"  # a scanner process's threads count with it
            elif name == "python":
                name = "other threads"  # unnamed at the OS level: the pools, the writers
            used[name.rstrip("0123456789_-") or name] += seconds
    return used


def spool_empty(dep: Deployment) -> int:
    """1 once the gateway's spool holds nothing (its receipts acknowledged), else 0."""
    try:
        return 0 if dep.spooled() else 1
    except OSError:  # a segment removed while it was read: look again
        return 0


def cpu_line(what: str, before: dict[str, Counter[str]], after: dict[str, Counter[str]],
             count: int) -> str:
    parts = []
    for name in before:
        spent = after[name] - before[name]
        per = {k: v / count * 1000 for k, v in spent.items()}
        top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1])
                        if k not in ("all", "main") and v >= 0.05)
        parts.append(f"{name} main thread {per.get('main', 0.0):.2f} ms, all "
                     f"{per.get('all', 0.0):.2f} ms ({top})")
    return f"cpu per released message, {what}: " + "; ".join(parts)


def main() -> None:
    parser = load_parser(__doc__, messages=10_000, deadline_s=900.0)
    args = parser.parse_args()

    root = bench_root("pvoq-bench-release-")
    dep = deployment(root / "deploy", args.sessions)
    sink = SmtpSink(root / "sink", dep.ports["sink"], dump=True)
    sender = "release@sender.example"
    with bench_run(root, dep, sink):
        sink.start()
        dep.start_manager()
        dep.start_gateway()
        print(f"smtp-source: {args.messages} messages of {args.size} bytes, {args.sessions} "
              "sessions, a new connection per message, caught by a content filter; "
              "then one bulk release to smtp-sink downstream")
        print_load()
        quarantined, intake = quarantine_phase(dep, args.messages, args.sessions, args.size,
                                               sender=sender, deadline_s=args.deadline)
        print(f"quarantine: smtp-source -> gateway -> CPQ -> manager, held and searchable: "
              f"{quarantined:8.1f} msgs/s (SMTP intake alone {intake:.1f})")
        problem = exactly_once(held_recipients(dep, HELD, sender), args.messages)
        if problem:
            raise BenchFailure(f"the manager's quarantine is wrong: {problem}")

        pids = {"manager": [dep.procs["manager"].pid],
                "gateway": tree(dep.procs["gateway"].pid)}
        cpu_start = {name: cpu_seconds(p) for name, p in pids.items()}
        start = time.perf_counter()
        data = bulk_release(dep, args.messages, timeout_s=args.deadline)
        decided = time.perf_counter() - start
        end = wait_until("smtp-sink to take every released message", lambda: sink.count,
                         args.messages, deadline_s=args.deadline, interval_s=0.05)
        cpu_end = {name: cpu_seconds(p) for name, p in pids.items()}
        released = args.messages / (end - start)
        print(f"release: one bulk action ({data['done']} done in {decided:.1f} s) -> CPQ -> "
              f"gateway -> smtp-sink: {released:8.1f} msgs/s")

        wait_until("the gateway's release receipts acknowledged", lambda: spool_empty(dep),
                   1, deadline_s=args.deadline, interval_s=0.5)
        cpu_settled = {name: cpu_seconds(p) for name, p in pids.items()}
        settled = time.perf_counter() - start
        sink.stop()
        problem = exactly_once(recipient_numbers(sink.deliveries(), sender), args.messages)
        if problem:
            raise BenchFailure(f"smtp-sink's deliveries: {problem}")
        left = held_count(dep, HELD)
        if left:
            raise BenchFailure(f"{left} messages still held after the release")
        print(f"delivered: {args.messages} messages at smtp-sink, each exactly once; "
              "none left held")
        print(cpu_line("release phase", cpu_start, cpu_end, args.messages))
        print(cpu_line(f"until settled ({settled:.1f} s)", cpu_start, cpu_settled,
                       args.messages))
        print_load()
        print(f"RESULT release {released:.1f} msgs/s ratio={released / quarantined:.2f}")


if __name__ == "__main__":
    main()
