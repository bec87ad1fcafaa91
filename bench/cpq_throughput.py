"""CPQ throughput: quarantine transfers per second into a real manager.

The client is pvoq's own CPQ sender (mutual TLS, connections reused,
`XCPQ META` + `BDAT <size> LAST` per message, driven as a gateway drives it:
each connection carries as many transactions at once as its `in_flight`
says, 8 where the peer offers CHUNKING and PIPELINING), driving N messages of
10 KB over C connections into:

- the reference: a bare aiosmtpd server with the same TLS context that answers
  250 and stores nothing (`bench/reference_sink.py --tls`, its own process);
  its EHLO offers PIPELINING and CHUNKING as the manager's does, and it takes
  BDAT, so the client sends both the same exchange (`--unpipelined-reference`
  also measures it without either: one DATA transaction at a time);
- a real `pvoq manager` process whose cpq_listener stores each message
  durably (body fdatasync'd, directory fsync'd, SQLite commit) before its
  250; the transfers in flight together are group-committed (one batch: their
  bodies synced together, one transaction), so the batch is at most as large
  as the transactions in flight (connections × in_flight).

Both run in the same invocation on the same machine, in alternating rounds
(the reference, then the manager; five rounds by default) because this
shared machine's speed drifts within a minute and the reference alone has
run anywhere from 650 to 1,330 msgs/s on a quiet machine; the ratio of each
round is the manager's rate over the reference's of the same round. Also
printed: the manager's CPU a transfer over its rounds (utime + stime of its
event-loop thread and of its other threads, from /proc), which says more
than a rate when other work shares the cores, the reference sink's CPU a
transfer, and the client's latency percentiles (a transfer's send to its
reply). Bounded: N messages a round, a deadline per phase. Loopback only.

Last line, medians over the rounds:
`RESULT cpq_throughput <msgs/s> msgs/s ratio=<pvoq ÷ reference of the same round>`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pvoq.config.loader import load_config
from pvoq.cpq import tls
from pvoq.cpq.client import CpqConnection
from pvoq.cpq.metadata import encode_chunks
from pvoq.gateway.router import quarantine_transfer_id
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.client import SmtpConnection, TlsPolicy
from pvoq.testing.localdeploy import (
    GATEWAY,
    GATEWAY_SERIAL,
    Deployment,
    free_port,
    quarantine_metadata,
    wait_for,
)

DEADLINE_S = 300.0


def message(i: int, size: int) -> bytes:
    head = (f"From: alice@sender.example\r\nTo: bob@example.com\r\n"
            f"Subject: benchmark {i}\r\nMessage-ID: <{i}.{uuid.uuid4().hex}@bench>\r\n\r\n")
    line = b"x" * 76 + b"\r\n"
    return head.encode() + line * max(1, (size - len(head)) // len(line))


def meta(i: int, size: int) -> dict:
    # The transfer id a gateway gives a message it catches.
    return quarantine_metadata(quarantine_transfer_id(GATEWAY_SERIAL, i), i, size,
                               reason="content filter:bench", received=time.time())


async def drive(make_conn, port: int, total: int, conns: int, size: int, cpq: bool,
                latencies: list[float] | None = None, in_flight: list[int] | None = None
                ) -> float:
    """Transfers a second; each transfer's time from its send to its reply in *latencies*,
    each connection's transactions under way at once (as a gateway's) in *in_flight*."""
    in_flight = [] if in_flight is None else in_flight
    bodies = [message(i, size) for i in range(total)]

    async def worker(indices: list[int]) -> None:
        conn = make_conn()
        await conn.open("127.0.0.1", port)
        todo = iter(indices)

        async def lane() -> None:  # one of the transactions under way on the connection
            for i in todo:
                extra = [f"XCPQ META {c}" for c in encode_chunks(meta(i, size))] if cpq else []
                sent = time.perf_counter()
                result = await conn.send(mid=i, sender="alice@sender.example",
                                         recipients=[(0, "bob@example.com")], body=bodies[i],
                                         extra=extra)
                if not result[0].ok:
                    raise RuntimeError(f"message {i} refused: {result[0]}")
                if latencies is not None:
                    latencies.append(time.perf_counter() - sent)

        try:
            in_flight.append(conn.in_flight)
            await asyncio.gather(*(lane() for _ in range(conn.in_flight)))
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker(list(range(k, total, conns)))
                                            for k in range(conns))), DEADLINE_S)
    return total / (time.perf_counter() - start)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (utime + stime) of *pid*'s main thread (its event loop) and of its
    other threads (the writer, the sync threads) together."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        name = "event loop" if task.name == str(pid) else "other threads"
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def policy_held(dep: Deployment) -> int:
    """The manager's held count in Policy (its counter: exact at any size)."""
    data = dep.admin(dep.manager_config, "quarantine.overview", {})["data"]
    return next(int(q["messages"]) for q in data["quarantines"] if q["name"] == "Policy")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def print_load() -> None:
    """The load average beside the figures: other work on the cores changes them."""
    print("load average (1, 5, 15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="per round and server")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--size", type=int, default=10_240)
    parser.add_argument("--unpipelined-reference", action="store_true",
                        help="also measure the reference with PIPELINING and CHUNKING left "
                             "out of its EHLO: one DATA transaction at a time a connection, "
                             "as a bare aiosmtpd is spoken to (printed only; the ratio uses "
                             "the one offering both)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="pvoq-bench-cpq-"))
    dep = Deployment(root / "deploy")
    dep.init()
    gw_cfg = load_config(dep.gateway_config)
    client_tls = tls.client_context(gw_cfg.cpq_certificate, ciphers=gw_cfg.ssl.outbound_ciphers)
    log = MailLog(root / "client-logs", appliance="bench client", serial="BENCH")
    ids = IdAllocator(root / "client-ids.json")
    sink_port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    sinks = [subprocess.Popen([sys.executable,
                               str(Path(__file__).with_name("reference_sink.py")),
                               str(port), "--tls", str(dep.manager_config), *flags],
                              stdout=subprocess.PIPE, env=env)
             for port, flags in [(sink_port, [])] + ([(free_port(), ["--no-pipelining"])]
                                                      if args.unpipelined_reference else [])]
    try:
        for sink in sinks:
            assert sink.stdout is not None and sink.stdout.readline().strip() == b"ready"
        dep.start_manager()

        def plain() -> SmtpConnection:
            return SmtpConnection(maillog=log, ids=ids, local_hostname=GATEWAY, label="bench",
                                  tls=TlsPolicy(client_tls, required=True), timeout_s=60,
                                  pipeline_transactions=True)

        def cpq() -> CpqConnection:
            return CpqConnection(expect_role="manager", maillog=log, ids=ids,
                                 local_hostname=GATEWAY, label="the.cpq.host",
                                 tls=TlsPolicy(client_tls, required=True), timeout_s=60)

        print(f"{args.messages} messages of {args.size} bytes over {args.connections} "
              f"TLS connections (reused), one machine, loopback; {args.rounds} rounds, "
              "each the reference then the manager")
        print_load()
        manager_pid = dep.procs["manager"].pid
        before = thread_cpu(manager_pid)
        latencies: list[float] = []
        sink_cpu = 0.0
        ours: list[float] = []
        ratios: list[float] = []
        for n in range(1, args.rounds + 1):
            sink_before = sum(thread_cpu(sinks[0].pid).values())
            windows: list[int] = []
            reference = asyncio.run(drive(plain, sink_port, args.messages, args.connections,
                                          args.size, cpq=False, in_flight=windows))
            sink_cpu += sum(thread_cpu(sinks[0].pid).values()) - sink_before
            rate = asyncio.run(drive(cpq, dep.ports["manager_cpq"], args.messages,
                                     args.connections, args.size, cpq=True,
                                     latencies=latencies, in_flight=windows))
            ours.append(rate)
            ratios.append(rate / reference)
            print(f"round {n}: reference (bare aiosmtpd, same TLS, stores nothing) "
                  f"{reference:7.1f} msgs/s; pvoq manager cpq_listener (XCPQ META, "
                  f"group-committed fsyncs + SQLite commit before 250) {rate:7.1f} msgs/s; "
                  f"ratio {rate / reference:.2f}; transactions in flight a connection "
                  f"(reference, manager) {windows[0]}, {windows[-1]}; "
                  f"load average {os.getloadavg()[0]:.2f}")
        after = thread_cpu(manager_pid)
        if len(sinks) > 1:
            port = int(sinks[1].args[2])
            unpipelined = asyncio.run(drive(plain, port, args.messages, args.connections,
                                            args.size, cpq=False))
            print(f"reference without PIPELINING and CHUNKING offered (not used in the "
                  f"ratio): {unpipelined:8.1f} msgs/s; the manager's median over it: "
                  f"{statistics.median(ours) / unpipelined:.2f}")
        total = args.messages * args.rounds
        stored = wait_for("the count", lambda: policy_held(dep))
        print(f"stored by the manager: {stored}")
        used = {name: after[name] - before.get(name, 0.0) for name in after}
        per = 1000 / total
        print(f"manager CPU a transfer: {sum(used.values()) * per:.2f} ms ("
              + ", ".join(f"{name} {cpu * per:.2f}" for name, cpu in
                          sorted(used.items(), key=lambda kv: -kv[1]) if cpu > 0) + "); "
              f"the reference's: {sink_cpu * per:.2f} ms")
        print("transfer latency (send to reply), ms: "
              + ", ".join(f"p{p} {percentile(latencies, p) * 1000:.1f}" for p in (50, 90, 99)))
        print("rounds: pvoq " + ", ".join(f"{x:.1f}" for x in ours) + " msgs/s; ratios "
              + ", ".join(f"{x:.2f}" for x in ratios))
        if stored != total:
            raise SystemExit(f"expected {total} stored, found {stored}")
        print_load()
        print(f"RESULT cpq_throughput {statistics.median(ours):.1f} msgs/s "
              f"ratio={statistics.median(ratios):.2f}")
    finally:
        dep.stop_all()
        for sink in sinks:
            sink.terminate()
            sink.wait(10)
        log.close()


if __name__ == "__main__":
    main()
