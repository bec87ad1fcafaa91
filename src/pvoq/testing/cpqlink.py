"""A CPQ link on 127.0.0.1 for tests and benchmarks: a `cpq_listener` (the real
session, `CpqSMTP` or a subclass) and a gateway's `CpqConnection` to it over mutual
TLS, with a deployment CA and the two appliance certificates it issues."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import uvloop

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import (
    DEFAULT_CIPHERS,
    CpqCertificate,
    Listener,
    ListenerProtocol,
    ListenerType,
)
from pvoq.cpq.ca import CA_CERT_FILE, create_ca, issue_certificate
from pvoq.cpq.client import CpqConnection
from pvoq.cpq.server import CpqSMTP
from pvoq.cpq.tls import client_context, server_context
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.client import TlsPolicy
from pvoq.smtp.server import ServerContext, start_listener

GATEWAY = "gw1.example.com"
MANAGER = "mgr.example.com"
RELAY_LOCALHOST = ("$RELAYED\n  RELAY {}\n$BLOCKED\n  REJECT {}\nRELAYLIST:\n  127.0.0.1\n"
                   "    $RELAYED (the gateway)\nALL\n  $BLOCKED (Everyone else)\n")
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}

# Builds the listener's session: (server context, listener, its TLS context) -> session.
SessionFactory = Callable[[ServerContext, Listener, Any], CpqSMTP]


def issue_pair(base: Path) -> dict[str, CpqCertificate]:
    """A deployment CA under *base* and the CPQ certificates it issues, by role:
    `gateway` for GATEWAY and `manager` for MANAGER, both for 127.0.0.1."""
    create_ca(base / "ca")
    made = {}
    for hostname, role in ((GATEWAY, "gateway"), (MANAGER, "manager")):
        issued = issue_certificate(base / "ca", base / role, hostname=hostname, role=role,
                                   addresses=["127.0.0.1"])
        made[role] = CpqCertificate(base / "ca" / CA_CERT_FILE, issued.certificate,
                                    issued.private_key)
    return made


@dataclass
class CpqLink:
    conn: CpqConnection   # not yet open: `await link.open()`
    port: int
    context: ServerContext
    log: MailLog          # the client's mail_logs

    async def open(self) -> None:
        await self.conn.open("127.0.0.1", self.port)


@asynccontextmanager
async def cpq_link(tmp: Path, session: SessionFactory, *, server_certs: CpqCertificate,
                   client_certs: CpqCertificate) -> AsyncIterator[CpqLink]:
    """A listener whose sessions *session* builds, and a client connection to it (closed,
    with the listener and both logs, on the way out)."""
    context = ServerContext(MailLog(tmp / "server-logs", appliance="m", serial="M"),
                            IdAllocator(tmp / "server-ids.json"), MANAGER)
    listener = Listener(name="cpq_listener", protocol=ListenerProtocol.CPQ,
                        interface_name="Management", port=0, listen_queue_size=50,
                        type=ListenerType.PRIVATE,
                        hat=parse_hat(RELAY_LOCALHOST), rat=make_rat([("ALL", "ACCEPT", 0)]))
    tls = server_context(server_certs, ciphers=DEFAULT_CIPHERS)
    server = cast(asyncio.Server, await start_listener(
        listener, "127.0.0.1", lambda: session(context, listener, tls)))
    log = MailLog(tmp / "gw-logs", appliance="gw", serial="GW1")
    conn = CpqConnection(expect_role="manager", expect_name=MANAGER, maillog=log,
                         ids=IdAllocator(tmp / "gw-ids.json"), local_hostname=GATEWAY,
                         label="the.cpq.host", timeout_s=20,
                         tls=TlsPolicy(client_context(client_certs, ciphers=DEFAULT_CIPHERS),
                                       required=True))
    try:
        yield CpqLink(conn, server.sockets[0].getsockname()[1], context, log)
    finally:
        await conn.close()
        server.close()
        await server.wait_closed()
        log.close()
        context.maillog.close()
