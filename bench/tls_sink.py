"""Reference server for the CPQ benchmark: a bare aiosmtpd with the same TLS, storing nothing.

Usage: python bench/tls_sink.py CONFIG PORT  (CONFIG: a manager pvoq.xml, for its certificate)
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiosmtpd.smtp import SMTP

from pvoq.config.loader import load_config
from pvoq.cpq import tls


class Accept:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        return "250 2.0.0 Ok"


async def main(config_path: str, port: int) -> None:
    cfg = load_config(config_path)
    ctx = tls.server_context(cfg.cpq_certificate, ciphers=cfg.ssl.inbound_ciphers)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Accept(), hostname="reference.sink", tls_context=ctx,
                     require_starttls=True), host="127.0.0.1", port=port)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
