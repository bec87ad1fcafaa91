"""The CPQ probe against small local servers: each step that fails is named."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from pvoq.doctor.probe import Probe, probe_cpq
from pvoq.testing.localdeploy import free_port


def _context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _probe_against(handler: Handler) -> Probe:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await probe_cpq("127.0.0.1", port, source_ip="127.0.0.1", context=_context(),
                               timeout_s=2.0, local_hostname="doctor.test")
    finally:
        server.close()
        await server.wait_closed()


def test_refused_connection() -> None:
    probe = asyncio.run(probe_cpq("127.0.0.1", free_port(), source_ip=None, context=_context(),
                                  timeout_s=2.0, local_hostname="d"))
    assert probe.step == "connect" and probe.error == "Connection refused"


def test_a_refusing_banner() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 5.7.1 Access denied\r\n")
        await writer.drain()
        writer.close()

    probe = asyncio.run(_probe_against(handler))
    assert probe.step == "banner" and "554 5.7.1 Access denied" in probe.error


def test_no_starttls_offered() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 plain ESMTP\r\n")
        await reader.readline()
        writer.write(b"250-plain\r\n250 SIZE 1000\r\n")
        await writer.drain()
        await reader.readline()
        writer.close()

    probe = asyncio.run(_probe_against(handler))
    assert probe.banner == "220 plain ESMTP"
    assert probe.step == "starttls" and probe.error == "STARTTLS is not offered"


def test_a_silent_peer_times_out() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    probe = asyncio.run(_probe_against(handler))
    assert probe.step == "banner" and "no answer within 2s" in probe.error


def test_which_failures_are_our_certificate_refused() -> None:
    from pvoq.doctor.network import refused_our_certificate

    def probe(step: str, error: str) -> Probe:
        return Probe("h", 1, None).failed(step, error)

    assert refused_our_certificate(probe("ehlo after STARTTLS", "Connection reset by peer"))
    assert refused_our_certificate(probe("handshake", "TLS handshake failed: "
                                                      "TLSV1_ALERT_UNKNOWN_CA"))
    assert refused_our_certificate(probe("handshake", "SSLV3_ALERT_BAD_CERTIFICATE"))
    assert not refused_our_certificate(probe("handshake", "NO_SHARED_CIPHER"))
    assert not refused_our_certificate(probe("handshake", "SSLV3_ALERT_HANDSHAKE_FAILURE"))
