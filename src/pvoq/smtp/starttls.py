"""STARTTLS on a server session by the event loop's own TLS (`loop.start_tls`).

aiosmtpd wraps the connection in the standard library's pure-Python TLS
protocol (`asyncio.sslproto`) whatever the event loop, and every record read
or written then runs through several Python calls: on a CPQ listener, where
every reply and every body goes over TLS, that layer was over a quarter of the
manager's event loop. `loop.start_tls` gives the same TLS from uvloop's
compiled implementation (and the standard loop's own under
`PVOQ_EVENT_LOOP=asyncio`).

What aiosmtpd does once the handshake is over (RFC 3207 4.2: the SMTP state
starts again; 4.1: the certificate is the handler's to check) is done here in
the same order, with the same results: a new session (`_create_session`
keeps the connection's identity), plaintext sent after STARTTLS thrown away
(before the handshake starts),
`session.ssl` holding the TLS details (`peercert`, `cipher`, `compression`,
`ssl_object`), then the handler's STARTTLS hook decides whether the session
may go on. A failed handshake is reported through `handle_exception` as
aiosmtpd's `TLSSetupException` is (the `TLS failed: …` line) and the
connection closed; nothing is said on it.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, cast

from aiosmtpd.smtp import SMTP, TLSSetupException


async def start_tls(smtp: SMTP) -> None:
    """After the 220 to STARTTLS: the handshake, then the session set up again over TLS."""
    transport = smtp.transport
    context = smtp.tls_context
    assert transport is not None and context is not None
    # Kept as aiosmtpd keeps it: "STARTTLS under way or done" for the session's checks
    # (a CPQ listener's STARTTLS deadline), and closed with the connection.
    smtp._original_transport = transport
    # Whatever came after the STARTTLS line is plaintext someone injected: thrown away
    # now, before the TLS layer takes the connection (no await in between), so that
    # what the client sends as soon as the handshake ends is kept.
    smtp._reader._buffer.clear()  # type: ignore[attr-defined]
    try:
        tls = await smtp.loop.start_tls(cast(asyncio.WriteTransport, transport), smtp,
                                        context, server_side=True)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        # The TLS layer tells the session the connection is lost; say why, and close.
        failure = TLSSetupException()
        failure.__cause__ = error
        await smtp.handle_exception(failure)
        transport.close()
        return
    if tls is None:  # the connection went during the handshake
        return
    ssl_object: ssl.SSLObject | None = tls.get_extra_info("ssl_object")
    extra: dict[str, Any] = {
        "peercert": tls.get_extra_info("peercert"),
        "cipher": tls.get_extra_info("cipher"),
        "compression": tls.get_extra_info("compression"),
        "ssl_object": ssl_object,
    }
    # aiosmtpd's `connection_made` when STARTTLS re-enters it (RFC 3207 4.2).
    smtp._set_rset_state()
    smtp.session = smtp._create_session()
    smtp.session.peer = tls.get_extra_info("peername")
    smtp._reset_timeout()
    smtp._reader._transport = tls  # type: ignore[attr-defined]
    smtp._writer._transport = tls  # type: ignore[attr-defined]
    smtp._transport = tls  # type: ignore[attr-defined]  # StreamReaderProtocol's
    smtp._over_ssl = True  # type: ignore[attr-defined]
    smtp.transport = tls
    smtp._tls_protocol = tls  # type: ignore[assignment]  # EHLO no longer offers STARTTLS
    smtp.session.ssl = extra
    hook = smtp._handle_hooks.get("STARTTLS")
    smtp._tls_handshake_okay = True if hook is None else hook(smtp, smtp.session,
                                                               smtp.envelope)
