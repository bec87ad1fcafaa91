"""A CPQ probe: what a peer's `cpq_listener` does, step by step, for the doctor.

Connect (from the configured interface's address), read the 220 banner,
EHLO, STARTTLS, the TLS handshake with this appliance's CPQ client context
(its certificate, its outgoing cipher list, the deployment CA), the peer's
certificate (name and role), EHLO again for the `XCPQ` keyword, QUIT. No
transaction is opened: the probe changes nothing on the peer. It never raises:
the step that failed and why are in the `Probe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from pvoq.cpq.ca import peer_common_name, peer_role

MAX_REPLY_LINES = 100


@dataclass
class Probe:
    host: str
    port: int
    source_ip: str | None
    step: str = ""              # the step that failed ("" once all passed)
    error: str = ""
    banner: str = ""
    starttls: bool = False
    protocol: str = ""
    cipher: str = ""
    anonymous: bool = False     # the handshake completed without a server certificate
    peer_name: str | None = None
    peer_role: str | None = None
    xcpq: bool = False

    @property
    def where(self) -> str:
        source = f" from {self.source_ip}" if self.source_ip else ""
        return f"{self.host}:{self.port}{source}"

    def failed(self, step: str, error: str) -> Probe:
        self.step, self.error = step, error
        return self


async def _reply(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    lines: list[str] = []
    for _ in range(MAX_REPLY_LINES):
        raw = await reader.readline()
        if not raw:
            raise ConnectionError("the peer closed the connection")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(line[4:])
        if len(line) < 4 or line[3] != "-":
            try:
                return int(line[:3]), lines
            except ValueError:
                raise ConnectionError(f"not an SMTP reply: {line[:80]!r}") from None
    raise ConnectionError("reply too long")


async def _send(writer: asyncio.StreamWriter, reader: asyncio.StreamReader,
                line: str) -> tuple[int, list[str]]:
    writer.write(line.encode() + b"\r\n")
    await writer.drain()
    return await _reply(reader)


def certificate_summary(der: bytes) -> str:
    """`CN x (role y), issued by z, valid until d` of a DER certificate."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        return f"an unreadable certificate ({exc})"

    def field(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
        values = name.get_attributes_for_oid(oid)
        return str(values[0].value) if values else "?"

    return (f"CN {field(cert.subject, NameOID.COMMON_NAME)!r} "
            f"(role {field(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)!r}), issued by "
            f"{field(cert.issuer, NameOID.COMMON_NAME)!r}, valid until "
            f"{cert.not_valid_after_utc:%Y-%m-%d}")


async def presented_certificate(host: str, port: int, *, source_ip: str | None,
                                context: ssl.SSLContext, timeout_s: float) -> bytes | None:
    """The certificate the peer presents, fetched without verifying it (to name it)."""
    loose = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    loose.minimum_version = context.minimum_version
    with contextlib.suppress(ssl.SSLError):
        loose.set_ciphers("DEFAULT:@SECLEVEL=0")
    probe, der = await _run(host, port, source_ip=source_ip, context=loose,
                            timeout_s=timeout_s, local_hostname="doctor")
    return der


async def probe_cpq(host: str, port: int, *, source_ip: str | None, context: ssl.SSLContext,
                    timeout_s: float, local_hostname: str) -> Probe:
    """Walk the peer's cpq_listener as a CPQ client would; see the module docstring."""
    probe, _ = await _run(host, port, source_ip=source_ip, context=context,
                          timeout_s=timeout_s, local_hostname=local_hostname)
    return probe


async def _run(host: str, port: int, *, source_ip: str | None, context: ssl.SSLContext,
               timeout_s: float, local_hostname: str) -> tuple[Probe, bytes | None]:
    probe = Probe(host, port, source_ip)
    local = (source_ip, 0) if source_ip else None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port, local_addr=local)
    except TimeoutError:
        return probe.failed("connect", f"no answer within {timeout_s:g}s"), None
    except OSError as exc:  # asyncio's text hides the cause: name it by its errno
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        return probe.failed("connect", reason), None
    der: bytes | None = None
    step = "banner"
    try:
        async with asyncio.timeout(timeout_s):
            code, lines = await _reply(reader)
            probe.banner = f"{code} {lines[0] if lines else ''}".strip()
            if code != 220:
                return probe.failed("banner", f"the banner is {probe.banner!r}, not 220"), der
            step = "ehlo"
            code, lines = await _send(writer, reader, f"EHLO {local_hostname}")
            if code != 250:
                return probe.failed("ehlo", f"EHLO answered {code} {' '.join(lines)}"), der
            probe.starttls = any(w.upper().startswith("STARTTLS") for w in lines)
            if not probe.starttls:
                return probe.failed("starttls", "STARTTLS is not offered"), der
            step = "starttls"
            code, lines = await _send(writer, reader, "STARTTLS")
            if code != 220:
                return probe.failed("starttls", f"STARTTLS answered {code} "
                                                f"{' '.join(lines)}"), der
            step = "handshake"
            try:
                await writer.start_tls(context)
            except ssl.SSLCertVerificationError as exc:
                return probe.failed("certificate", f"verify error: {exc.verify_message}"), der
            except (ssl.SSLError, OSError) as exc:
                reason = getattr(exc, "reason", None) or str(exc)
                return probe.failed("handshake", f"TLS handshake failed: {reason}"), der
            ssl_object = writer.get_extra_info("ssl_object")
            if ssl_object is not None:
                probe.protocol = str(ssl_object.version() or "")
                cipher = ssl_object.cipher()
                probe.cipher = cipher[0] if cipher else ""
                der = ssl_object.getpeercert(binary_form=True)
                cert = ssl_object.getpeercert() if der else None
            else:
                cert = None
            if not der:
                probe.anonymous = True
                return probe.failed("certificate", "verify error: no certificate from server "
                                                   f"(cipher {probe.cipher} is anonymous)"), der
            probe.peer_name = peer_common_name(cert)
            probe.peer_role = peer_role(cert)
            step = "ehlo after STARTTLS"
            code, lines = await _send(writer, reader, f"EHLO {local_hostname}")
            probe.xcpq = code == 250 and any(w.upper().startswith("XCPQ") for w in lines)
            with contextlib.suppress(ConnectionError, OSError):
                await _send(writer, reader, "QUIT")
    except TimeoutError:
        return probe.failed(step, f"no answer within {timeout_s:g}s"), der
    except (ConnectionError, OSError, ssl.SSLError) as exc:
        return probe.failed(step, str(exc) or type(exc).__name__), der
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    return probe, der
