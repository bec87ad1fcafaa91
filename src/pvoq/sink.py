"""A downstream SMTP sink: the "next hop" a gateway delivers clean mail to.

For the demo and the end-to-end tests: it stores every message it accepts as
`<n>.eml` plus `<n>.json` (envelope) in a directory, fsync'd before `250`,
so a test can read exactly what arrived. Recipients whose local part starts
with `reject` are refused with `550 5.1.1` and those starting with `defer`
with `450 4.2.1`, so that bounces and retries can be shown.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from pvoq.fsutil import atomic_write
from pvoq.smtp import replies


class SinkHandler:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.count = len(list(self.dir.glob("*.json")))

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any,
                          address: str, options: list[str]) -> str:
        local = address.partition("@")[0].lower()
        if local.startswith("reject"):
            return replies.SINK_USER_UNKNOWN.format(address=address)
        if local.startswith("defer"):
            return replies.SINK_MAILBOX_BUSY.format(address=address)
        envelope.rcpt_tos.append(address)
        return str(replies.SINK_RCPT_OK)

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.count += 1
        n = self.count
        atomic_write(self.dir / f"{n}.eml", envelope.original_content or b"", sync_dir=False)
        atomic_write(self.dir / f"{n}.json", json.dumps({
            "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
            "peer": list(session.peer)[:2], "received": time.time()}).encode())
        return replies.SINK_STORED.format(n=n)


async def run_sink(host: str, port: int, directory: Path) -> None:
    loop = asyncio.get_running_loop()
    handler = SinkHandler(directory)
    server = await loop.create_server(lambda: SMTP(handler, hostname="sink.pvoq.test"),
                                      host=host, port=port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"sink listening on {host}:{port}, storing in {directory}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()
