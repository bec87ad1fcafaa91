"""Relay: clean mail through a scanning gateway, against a real Postfix relay on the same path.

Postfix's `smtp-source` sends N clean messages of 10 KB (16 sessions, a new
connection per message, each to its own numbered recipient), and one
Postfix `smtp-sink` downstream takes everything (it appends every
transaction to a dump file, from which deliveries are counted):

- direct: smtp-source → smtp-sink, for scale;
- the reference: smtp-source → a private Postfix instance (its own
  configuration, queue and data directories in a temporary directory, the
  distribution's master.cf, default queue and delivery settings, loopback
  ports; started and stopped here) relaying everything to smtp-sink;
- pvoq: smtp-source → a real `pvoq gateway` (fsync'd spool, the scan
  pipeline on: message filter, content filter, anti-virus — the built-in
  check, or a private clamd with `--clamd` —, outbreak filters) delivering
  to smtp-sink.

The clock starts with smtp-source and stops when smtp-sink has taken the
last message. Rounds alternate Postfix and pvoq (three by default) because
this machine's speed drifts; the result is the median of pvoq's rates and of
the per-round ratios. Every message must arrive at smtp-sink exactly once.
Bounded: N messages, a deadline per phase (on timeout it says how far it got
and exits 2). Loopback only; every process it starts it stops by PID; its
temporary directory is removed.

Last line: `RESULT relay <msgs/s> msgs/s ratio=<pvoq ÷ postfix>`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time

from _mailbench import (
    BenchFailure,
    DeploymentError,
    PostfixRelay,
    SmtpSink,
    bench_root,
    deployment,
    exactly_once,
    free_port,
    load_parser,
    recipient_numbers,
    report_progress,
    run_source,
    use_clamd,
    wait_until,
)

from pvoq.testing.clamd import ClamdProcess


def _load() -> str:
    """The load average (1, 5, 15 min) beside each figure: other work on the cores moves it."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def through(sink: SmtpSink, port: int, sender: str, args: argparse.Namespace) -> float:
    """smtp-source to *port* until smtp-sink has every message: msgs/s."""
    target = sink.count + args.messages
    start = time.perf_counter()
    run_source(port, args.messages, args.sessions, args.size, sender=sender,
               deadline_s=args.deadline)
    end = wait_until(f"smtp-sink to take the messages from {sender}", lambda: sink.count,
                     target, deadline_s=args.deadline, interval_s=0.02)
    return args.messages / (end - start)


def main() -> None:
    parser = load_parser(__doc__, messages=2000, deadline_s=600.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clamd", action="store_true",
                        help="scan with a private clamd instead of the built-in check")
    args = parser.parse_args()

    root = bench_root("pvoq-bench-relay-")
    dep = deployment(root / "deploy", args.sessions)
    sink = SmtpSink(root / "sink", dep.ports["sink"], dump=True)
    clamd = ClamdProcess(root / "clamd") if args.clamd else None
    senders: list[str] = []
    ours: list[float] = []
    ratios: list[float] = []
    try:
        sink.start()
        if clamd is not None:
            clamd.start()
            use_clamd(dep, clamd.socket_path)
        dep.start_manager()
        dep.start_gateway()
        engine = "a private clamd" if clamd else "the built-in check"
        print(f"smtp-source: {args.messages} clean messages of {args.size} bytes, "
              f"{args.sessions} sessions, a new connection per message; smtp-sink downstream; "
              f"{args.rounds} rounds, each Postfix then pvoq (anti-virus: {engine})")
        direct = through(sink, sink.port, "direct@sender.example", args)
        senders.append("direct@sender.example")
        print(f"direct: smtp-source -> smtp-sink {direct:8.1f} msgs/s; load average "
              f"{_load()}", flush=True)
        for n in range(1, args.rounds + 1):
            postfix = PostfixRelay(root / f"postfix{n}", free_port(), sink.port).start()
            try:
                sender = f"postfix-{n}@sender.example"
                senders.append(sender)
                reference = through(sink, postfix.port, sender, args)
            except BenchFailure:
                print(postfix.log_tail())
                raise
            finally:
                postfix.stop()
            sender = f"pvoq-{n}@sender.example"
            senders.append(sender)
            rate = through(sink, dep.ports["gateway_smtp"], sender, args)
            ours.append(rate)
            ratios.append(rate / reference)
            print(f"round {n}: Postfix relay {reference:8.1f} msgs/s; pvoq gateway (scanning) "
                  f"{rate:8.1f} msgs/s; ratio {rate / reference:.2f}; load average {_load()}",
                  flush=True)
        sink.stop()
        delivered = sink.deliveries()
        for sender in senders:
            problem = exactly_once(recipient_numbers(delivered, sender), args.messages)
            if problem:
                raise BenchFailure(f"smtp-sink's deliveries from {sender}: {problem}")
        print(f"delivered: {len(delivered)} messages at smtp-sink, each exactly once")
        print(f"RESULT relay {statistics.median(ours):.1f} msgs/s "
              f"ratio={statistics.median(ratios):.2f}")
    except (BenchFailure, DeploymentError) as exc:
        print(f"FAILED: {exc}", flush=True)
        report_progress("taken by smtp-sink in all", lambda: sink.count)
        sys.exit(2)
    finally:
        dep.stop_all()
        sink.stop()
        if clamd is not None:
            clamd.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
