"""Quarantine end to end: smtp-source → gateway → content filter → CPQ → manager, held.

Postfix's `smtp-source` sends N messages of 10 KB (16 sessions, a new
connection per message, each to its own numbered recipient) whose subject a
content filter of the gateway catches ("confidential", the generated
configuration's `confidential_subject` filter, quarantine Policy):

- the reference: the same smtp-source command into Postfix's `smtp-sink`,
  which answers 250 and keeps nothing;
- pvoq: a real `pvoq gateway` (fsync'd spool, the scan pipeline with its
  default filters and anti-virus check) that ships each message over CPQ
  (mutual TLS) to a real `pvoq manager`, which stores it durably (body and
  row) before its 250. The clock starts with smtp-source and stops when the
  manager's quarantine search (the admin socket, as `pvoq cli quarantine
  search` asks) finds all N.

Afterwards the held messages are read back page by page through the same
search: each numbered recipient must be held exactly once. Bounded: N
messages and a deadline per phase (on timeout it says how far it got and
exits 2). Loopback only; every process it starts it stops by PID; its
temporary directory is removed.

Last line: `RESULT quarantine_e2e <msgs/s> msgs/s ratio=<pvoq ÷ smtp-sink>`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _mailbench import (
    CAUGHT_SUBJECT,
    HELD,
    BenchFailure,
    SmtpSink,
    bench_root,
    bench_run,
    deployment,
    exactly_once,
    free_port,
    held_recipients,
    load_parser,
    print_load,
    quarantine_phase,
    run_source,
    wait_until,
)


def reference(root: Path, args: argparse.Namespace) -> float:
    sink = SmtpSink(root / "sink", free_port(), dump=False).start()
    try:
        elapsed = run_source(sink.port, args.messages, args.sessions, args.size,
                             sender="reference@sender.example", subject=CAUGHT_SUBJECT,
                             deadline_s=args.deadline)
        wait_until("smtp-sink to count every message", lambda: sink.count, args.messages,
                   deadline_s=10)
        return args.messages / elapsed
    finally:
        sink.stop()


def main() -> None:
    parser = load_parser(__doc__, messages=5000, deadline_s=600.0)
    args = parser.parse_args()

    root = bench_root("pvoq-bench-quarantine-")
    dep = deployment(root / "deploy", args.sessions)
    with bench_run(root, dep):
        print(f"smtp-source: {args.messages} messages of {args.size} bytes, {args.sessions} "
              f"sessions, a new connection per message, subject {CAUGHT_SUBJECT!r}")
        print_load()
        ref = reference(root, args)
        print(f"reference: smtp-source -> Postfix smtp-sink (keeps nothing): {ref:8.1f} msgs/s")
        dep.start_manager()
        dep.start_gateway()
        sender = "quarantine@sender.example"
        rate, intake = quarantine_phase(dep, args.messages, args.sessions, args.size,
                                        sender=sender, deadline_s=args.deadline)
        print(f"pvoq: smtp-source -> gateway (content filter) -> CPQ -> manager, held and "
              f"searchable: {rate:8.1f} msgs/s (SMTP intake alone {intake:.1f})")
        problem = exactly_once(held_recipients(dep, HELD, sender), args.messages)
        if problem:
            raise BenchFailure(f"the manager's quarantine is wrong: {problem}")
        print(f"held: {args.messages} messages in Policy, each recipient exactly once")
        print_load()
        print(f"RESULT quarantine_e2e {rate:.1f} msgs/s ratio={rate / ref:.3f}")


if __name__ == "__main__":
    main()
