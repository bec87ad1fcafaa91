"""Migration throughput: held messages moved from a gateway's local quarantines to the manager.

One deployment on this machine (real processes, loopback, mutual TLS): a
manager and a gateway linked over SSH. In the same run:

- the reference: CPQ quarantine transfers into that manager, sent with the
  gateway's certificate by pvoq's own CPQ sender over `--connections`
  connections (what `bench/cpq_throughput.py` measures), N messages of
  `--size` bytes;
- the migration: the gateway's local store is filled with N held messages of
  the same size directly through its public API (`QuarantineStore.add_many`,
  the gateway stopped meanwhile), then `pvo.migrate --mode automatic` on the
  manager; timed from the command until the manager holds all N migrated
  messages (the gateway pushes them over CPQ, kind `migration`, removing each
  local copy after the manager's 250).

Bounded: N messages, a deadline per phase. Prints the load average beside
the figures. Last line:
`RESULT migration <msgs/s> msgs/s ratio=<migration ÷ quarantine transfer>`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpq_throughput import drive, message

from pvoq.config.loader import load_config
from pvoq.cpq import tls
from pvoq.cpq.client import CpqConnection
from pvoq.gateway.migration import CONNECTIONS
from pvoq.maillog import IdAllocator, MailLog
from pvoq.quarantine.arrivals import Arrival
from pvoq.quarantine.store import QuarantineStore
from pvoq.smtp.client import TlsPolicy
from pvoq.testing.localdeploy import GATEWAY, Deployment, quarantine_metadata, wait_for

DEADLINE_S = 600.0
FILL_BATCH = 500


def fill(data_dir: Path, total: int, size: int) -> None:
    """N held messages in the gateway's local store (the gateway is stopped)."""
    store = QuarantineStore(f"sqlite:///{data_dir / 'quarantine.db'}",
                            data_dir / "quarantine" / "bodies", node=GATEWAY)
    try:
        for start in range(0, total, FILL_BATCH):
            batch = []
            for i in range(start, min(total, start + FILL_BATCH)):
                mid = 1_000_000 + i
                meta = quarantine_metadata(f"l-PVOQ-G-0001-{mid}", mid, size,
                                           reason="content filter:bench", received=time.time())
                batch.append(Arrival(mid, meta, message(i, size), "127.0.0.1",
                                     f"benchmark {i}"))
            store.add_many(batch)
    finally:
        store.close()


def held(dep: Deployment) -> int:
    """What the manager holds, from its counters (`status`: no audit record per look)."""
    return int(dep.admin(dep.manager_config, "status")["data"]["messages_in_quarantine"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=None,
                        help="of the reference (default: the gateway's "
                             "max_connections_per_host, what its quarantine transfers use)")
    parser.add_argument("--size", type=int, default=10_240)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pvoq-bench-migration-"))
    dep = Deployment(root / "deploy", ssh=True)
    dep.init()
    gw_cfg = load_config(dep.gateway_config)
    client_tls = tls.client_context(gw_cfg.cpq_certificate, ciphers=gw_cfg.ssl.outbound_ciphers)
    log = MailLog(root / "client-logs", appliance="bench client", serial="BENCH")
    ids = IdAllocator(root / "client-ids.json")
    reference_conns = args.connections or gw_cfg.delivery.max_connections_per_host
    try:
        dep.start()
        dep.add_gateway_over_ssh()
        print(f"{args.messages} messages of {args.size} bytes, one machine, loopback; "
              f"load average before: "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

        def cpq() -> CpqConnection:
            return CpqConnection(expect_role="manager", maillog=log, ids=ids,
                                 local_hostname=GATEWAY, label="the.cpq.host",
                                 tls=TlsPolicy(client_tls, required=True), timeout_s=60)

        reference = asyncio.run(drive(cpq, dep.ports["manager_cpq"], args.messages,
                                      reference_conns, args.size, cpq=True))
        base = held(dep)
        print(f"reference: CPQ quarantine transfers into the manager, {reference_conns} "
              f"connections: {reference:8.1f} msgs/s "
              f"(load {os.getloadavg()[0]:.2f})")

        dep.stop("gateway")
        fill(gw_cfg.data_dir, args.messages, args.size)
        dep.start_gateway()
        local = dep.admin(dep.gateway_config, "quarantine.list", {"limit": 1})["data"]["total"]
        if os.environ.get("PVOQ_BENCH_PROFILE"):  # py-spy on both processes while it runs
            for name in ("gateway", "manager"):
                subprocess.Popen([os.environ["PVOQ_BENCH_PROFILE"], "record", "-o",
                                  str(root / f"{name}.svg"), "-d", "40", "-p",
                                  str(dep.procs[name].pid)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        if local != args.messages:
            raise SystemExit(f"expected {args.messages} held locally, found {local}")
        started = time.perf_counter()
        dep.admin(dep.manager_config, "pvo.migrate", {"mode": "automatic"})
        wait_for("every message to move",
                 lambda: held(dep) - base >= args.messages, timeout_s=DEADLINE_S,
                 interval_s=0.05)
        ours = args.messages / (time.perf_counter() - started)
        wait_for("the gateway's copies to go", lambda: dep.admin(
            dep.gateway_config, "quarantine.list", {"limit": 1})["data"]["total"] == 0,
            timeout_s=60)
        moved = held(dep) - base
        if moved != args.messages:
            raise SystemExit(f"expected {args.messages} migrated, found {moved}")
        print(f"migration: gateway local store -> manager over CPQ (kind migration), "
              f"{CONNECTIONS} connections, group-committed: {ours:8.1f} msgs/s "
              f"(load {os.getloadavg()[0]:.2f})")
        print(f"RESULT migration {ours:.1f} msgs/s ratio={ours / reference:.2f}")
    finally:
        dep.stop_all()
        log.close()


if __name__ == "__main__":
    main()
