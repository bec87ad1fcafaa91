"""The reference of the benchmarks: a bare aiosmtpd server that answers 250 and keeps nothing.

Usage: python bench/reference_sink.py PORT [--tls CONFIG] [--no-pipelining]
With `--tls`, STARTTLS is required and served with the CPQ certificate and
cipher list of the appliance configuration CONFIG, as a cpq_listener would.
Its EHLO offers PIPELINING, as pvoq's listeners do (aiosmtpd reads one command
line at a time, so pipelined commands are answered in order; it just does not
say so): a client then sends the same exchange to both. With `--tls` it also
offers CHUNKING, as a cpq_listener does after STARTTLS, and takes `BDAT <size>
[LAST]` (the chunk read and thrown away, `250` at once, the transaction ended
at LAST), so that pvoq's CPQ sender pipelines its transactions to both alike.
`--no-pipelining` leaves both keywords out.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import ssl

from aiosmtpd.smtp import SMTP, syntax

from pvoq.config.loader import load_config
from pvoq.cpq import tls


class Accept:
    def __init__(self, pipelining: bool) -> None:
        self.pipelining = pipelining

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
            if session.ssl is not None:
                responses.insert(len(responses) - 1, "250-CHUNKING")
        return responses

    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 Ok"


class ChunkingSink(SMTP):
    """aiosmtpd with the least of BDAT: each chunk read, `250` at once."""

    @syntax("BDAT <size> [LAST]")
    async def smtp_BDAT(self, arg):
        match = re.fullmatch(r"([0-9]+)(?: +(LAST))?", arg or "", re.I)
        if match is None:
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            self.transport.close()
            return
        await self._reader.readexactly(int(match.group(1)))
        if not (self.envelope.mail_from and self.envelope.rcpt_tos):
            reply = "503 5.5.1 Error: need MAIL and RCPT"
        else:
            reply = "250 2.0.0 Ok" if match.group(2) else f"250 2.0.0 {match.group(1)} octets"
        if match.group(2):
            self._set_post_data_state()
        await self.push(reply)


async def main(port: int, context: ssl.SSLContext | None, pipelining: bool) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ChunkingSink(Accept(pipelining), hostname="reference.sink", tls_context=context,
                             require_starttls=context is not None),
        host="127.0.0.1", port=port, backlog=128)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--tls", metavar="CONFIG", default=None)
    parser.add_argument("--no-pipelining", action="store_true",
                        help="leave PIPELINING out of the EHLO reply")
    args = parser.parse_args()
    ctx = None
    if args.tls:
        cfg = load_config(args.tls)
        ctx = tls.server_context(cfg.cpq_certificate, ciphers=cfg.ssl.inbound_ciphers)
    asyncio.run(main(args.port, ctx, not args.no_pipelining))
