"""CPU per CPQ transfer, both ends in one process: an A/B that the scheduler disturbs little.

The pvoq CPQ client (`cpq.client.CpqConnection`) and a `cpq_listener` session
(`cpq.server.CpqSMTP`, a handler that takes every transfer without storing
it) run in one process on uvloop, as the appliances do, over one mutual-TLS
connection on 127.0.0.1 (a deployment CA made in a temporary directory). After
100 transfers to warm up, N transfers of a 10 KB message (pipelined MAIL,
RCPT, `XCPQ META`, DATA, then the body) are timed with `time.process_time`:
the client's and the server's work together, the TLS of both ends included,
without the noise of other processes' scheduling. The source tree is the
one on `PYTHONPATH` (run it once per tree, alternating, to compare).

Last line: `RESULT cpq_leg_cpu <µs of CPU per transfer> us`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from pvoq.cpq.metadata import KIND_QUARANTINE, VERSION, encode_chunks
from pvoq.cpq.server import CpqHandler, CpqSMTP
from pvoq.smtp.server import ServerContext
from pvoq.testing.cpqlink import GATEWAY, cpq_link, issue_pair

WARM_UP = 100


class Taker(CpqHandler):
    """Takes every transfer, stores nothing: the leg's cost without the manager's store."""

    commits_whole = True

    async def store(self, *args: Any) -> str:
        return "250 2.0.0 Ok: quarantined"


def metadata(n: int, size: int) -> dict[str, Any]:
    return {"v": VERSION, "kind": KIND_QUARANTINE, "transfer_id": f"gw1-SN-{n}",
            "origin": {"hostname": GATEWAY, "serial": "GW1-SN", "mid": n},
            "sender": "alice@example.org",
            "recipients": [{"rid": 0, "address": "b@example.com"}],
            "quarantines": [{"name": "Policy", "reason": "content filter:x",
                             "stage": "content_filters"}],
            "received": 1700000000.5, "size": size}


async def measure(tmp: Path, transfers: int, size: int) -> float:
    """CPU seconds of *transfers* transfers (after the warm-up)."""
    certs = issue_pair(tmp / "pki")
    body = b"Subject: confidential report\r\n\r\n" + b"La de da de da 1.\r\n" * (size // 19)
    extras = [[f"XCPQ META {c}" for c in encode_chunks(metadata(n, len(body)))]
              for n in range(WARM_UP + transfers)]

    def session(context: ServerContext, listener: Any, tls: Any) -> CpqSMTP:
        return CpqSMTP(Taker(context), listener=listener, interface_ip="127.0.0.1",
                       context=context, tls_context=tls)

    async with cpq_link(tmp, session, server_certs=certs["manager"],
                        client_certs=certs["gateway"]) as link:
        await link.open()
        started = 0.0
        for n in range(WARM_UP + transfers):
            if n == WARM_UP:
                started = time.process_time()
            replies = await link.conn.send(mid=n, sender="alice@example.org",
                                           recipients=[(0, "b@example.com")], body=body,
                                           extra=extras[n])
            if replies[0].code != 250:
                raise SystemExit(f"transfer {n} refused: {replies[0]}")
        return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=2000)
    parser.add_argument("--size", type=int, default=10_240)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pvoq-bench-cpqleg-"))
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            cpu = runner.run(asyncio.wait_for(measure(tmp, args.transfers, args.size), 600))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.transfers} transfers of {args.size} bytes over one connection: "
          f"{cpu / args.transfers * 1e6:.0f} µs of CPU per transfer (client and server)")
    print(f"RESULT cpq_leg_cpu {cpu / args.transfers * 1e6:.0f} us")


if __name__ == "__main__":
    main()
