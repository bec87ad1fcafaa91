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

The reference, in the same run and process: the same client code (a plain
`smtp.client.SmtpConnection`, the same TLS client certificate) sending the
same message by DATA, without `XCPQ META`, to a bare aiosmtpd with the same
server certificate and STARTTLS required (`reference_sink.ChunkingSink`: its
STARTTLS is aiosmtpd's own, over the standard library's TLS layer), timed the
same way.

Last line: `RESULT cpq_leg_cpu <µs of CPU per transfer> us ratio=<reference µs ÷ this>`.
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
from reference_sink import Accept, ChunkingSink

from pvoq.config.model import DEFAULT_CIPHERS
from pvoq.cpq.metadata import KIND_QUARANTINE, VERSION, encode_chunks
from pvoq.cpq.server import CpqHandler, CpqSMTP
from pvoq.cpq.tls import client_context, server_context
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.client import SmtpConnection, TlsPolicy
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


def message(size: int) -> bytes:
    return b"Subject: confidential report\r\n\r\n" + b"La de da de da 1.\r\n" * (size // 19)


async def reference(tmp: Path, transfers: int, size: int) -> float:
    """CPU seconds of *transfers* sends (after the warm-up) to a bare aiosmtpd with the same
    TLS, from the same client code."""
    certs = issue_pair(tmp / "pki-reference")
    tls = server_context(certs["manager"], ciphers=DEFAULT_CIPHERS)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ChunkingSink(Accept(True), hostname="reference.sink", tls_context=tls,
                             require_starttls=True), host="127.0.0.1", port=0)
    log = MailLog(tmp / "reference-logs", appliance="gw", serial="GW1")
    conn = SmtpConnection(maillog=log, ids=IdAllocator(tmp / "reference-ids.json"),
                          local_hostname=GATEWAY, label="reference", timeout_s=20,
                          tls=TlsPolicy(client_context(certs["gateway"],
                                                       ciphers=DEFAULT_CIPHERS), required=True))
    body = message(size)
    try:
        await conn.open("127.0.0.1", server.sockets[0].getsockname()[1])
        started = 0.0
        for n in range(WARM_UP + transfers):
            if n == WARM_UP:
                started = time.process_time()
            replies = await conn.send(mid=n, sender="alice@example.org",
                                      recipients=[(0, "b@example.com")], body=body)
            if replies[0].code != 250:
                raise SystemExit(f"reference send {n} refused: {replies[0]}")
        return time.process_time() - started
    finally:
        await conn.close()
        server.close()
        await server.wait_closed()
        log.close()


async def measure(tmp: Path, transfers: int, size: int) -> float:
    """CPU seconds of *transfers* transfers (after the warm-up)."""
    certs = issue_pair(tmp / "pki")
    body = message(size)
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
            base = runner.run(asyncio.wait_for(reference(tmp, args.transfers, args.size), 600))
            cpu = runner.run(asyncio.wait_for(measure(tmp, args.transfers, args.size), 600))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ours, theirs = cpu / args.transfers * 1e6, base / args.transfers * 1e6
    print(f"{args.transfers} transfers of {args.size} bytes over one connection: "
          f"{ours:.0f} µs of CPU per transfer (client and server); the reference (the same "
          f"message, no XCPQ META, to a bare aiosmtpd with the same TLS): {theirs:.0f} µs")
    print(f"RESULT cpq_leg_cpu {ours:.0f} us ratio={theirs / ours:.2f}")


if __name__ == "__main__":
    main()
