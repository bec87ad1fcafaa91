"""One outgoing SMTP connection (a DCID), on aiosmtplib, logged like AsyncOS.

Owns the connection-level lines (`New SMTP DCID`, `TLS success`, `TLS
failed`, `DCID close`) and the per-transaction ones (`Delivery start`,
`Response`, `Message done`). It never decides whether to retry: it reports,
per recipient, what the server answered, and raises `DeliveryError` when the
connection as a whole failed.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiosmtplib

from pvoq import metrics
from pvoq.errors import TemporaryFailure
from pvoq.maillog import IdAllocator, MailLog


class DeliveryError(TemporaryFailure):
    """The connection failed before a per-recipient answer; always temporary here."""

    def __init__(self, reason: str, *, code: int = 421) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code

    @property
    def temporary(self) -> bool:
        return self.code // 100 == 4


@dataclass(frozen=True)
class TlsPolicy:
    """How a destination wants TLS: off, or required with a verified peer certificate."""

    context: ssl.SSLContext | None = None
    required: bool = False


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def temporary(self) -> bool:
        return self.code // 100 == 4


def _rids(rids: Sequence[int]) -> str:
    return "[" + ", ".join(str(r) for r in rids) + "]"


class SmtpConnection:
    """A delivery connection that can carry several transactions."""

    def __init__(self, *, maillog: MailLog, ids: IdAllocator, local_hostname: str,
                 label: str, tls: TlsPolicy, timeout_s: float,
                 source_ip: str | None = None) -> None:
        self.log = maillog
        self.ids = ids
        self.local_hostname = local_hostname
        self.label = label
        self.tls = tls
        self.timeout_s = timeout_s
        self.source_ip = source_ip
        self.dcid = 0
        self._smtp: aiosmtplib.SMTP | None = None

    async def open(self, host: str, port: int) -> None:
        self.dcid = self.ids.next("dcid")
        source = (self.source_ip, 0) if self.source_ip else None
        smtp = aiosmtplib.SMTP(hostname=host, port=port, local_hostname=self.local_hostname,
                               timeout=self.timeout_s, start_tls=False, source_address=source,
                               tls_context=self.tls.context)
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            self.log.info(f"Connection error: DCID {self.dcid} domain: {self.label} IP: {host} "
                          f"port: {port} details: {_describe(exc)} interface: "
                          f"{self.source_ip or 'default'}")
            raise DeliveryError(f"connection to {host}:{port} failed: {_describe(exc)}") from exc
        self._smtp = smtp
        local = smtp.get_transport_info("sockname") or ("?", 0)
        self.log.info(f"New SMTP DCID {self.dcid} interface {local[0]} address {host} port {port}")
        try:
            await smtp.ehlo()
            if self.tls.required:
                await self._start_tls()
        except DeliveryError:  # only _start_tls raises it here
            metrics.tls_failure(self.label)
            await self.close()
            raise
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            raise DeliveryError(f"{_describe(exc)}") from exc

    async def _start_tls(self) -> None:
        smtp = self._smtp
        assert smtp is not None
        required = f"DCID {self.dcid} TLS was required but could not be successfully negotiated"
        if not smtp.supports_extension("starttls"):
            self.log.info(f"DCID {self.dcid} TLS failed: the server does not offer STARTTLS")
            self.log.info(required)
            raise DeliveryError("TLS required: STARTTLS not offered")
        try:
            await smtp.starttls(tls_context=self.tls.context)
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            reason = _describe(exc)
            self.log.info(f"DCID {self.dcid} TLS failed: {reason}")
            self.log.info(required)
            raise DeliveryError(f"TLS required: {reason}") from exc
        ssl_object = smtp.get_transport_info("ssl_object")
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        if not cert:
            # An anonymous cipher completes the handshake without any
            # certificate: the peer is unauthenticated, so refuse to deliver.
            self.log.info(f"DCID {self.dcid} TLS failed: verify error: no certificate from server")
            self.log.info(required)
            raise DeliveryError("TLS required: no certificate from server")
        cipher = ssl_object.cipher()
        self.log.info(f"DCID {self.dcid} TLS success protocol {ssl_object.version()} "
                      f"cipher {cipher[0] if cipher else '?'} {self.label}")
        await smtp.ehlo()

    @property
    def peer_certificate(self) -> dict | None:
        if self._smtp is None:
            return None
        ssl_object = self._smtp.get_transport_info("ssl_object")
        return ssl_object.getpeercert() if ssl_object is not None else None

    def supports(self, keyword: str) -> bool:
        return self._smtp is not None and self._smtp.supports_extension(keyword)

    async def command(self, line: str) -> Reply:
        assert self._smtp is not None
        response = await self._smtp.execute_command(line.encode("ascii"))
        return Reply(response.code, response.message)

    async def send(self, *, mid: int, sender: str, recipients: Sequence[tuple[int, str]],
                   body: bytes | BodySource, extra: Sequence[str] = (), start_note: str = "",
                   done_note: str = "") -> dict[int, Reply]:
        """One transaction; the answer for each RID. Raises DeliveryError if the link fails."""
        smtp = self._smtp
        assert smtp is not None
        rids = [rid for rid, _ in recipients]
        self.log.info(f"Delivery start DCID {self.dcid} MID {mid} to RID {_rids(rids)}"
                      + (f" {start_note}" if start_note else ""))
        results: dict[int, Reply] = {}
        try:
            try:
                await smtp.mail(sender)
            except aiosmtplib.SMTPResponseException as exc:
                await _rset(smtp)
                return {rid: Reply(exc.code, exc.message) for rid in rids}
            accepted: list[int] = []
            for rid, address in recipients:
                try:
                    r = await smtp.rcpt(address)
                    accepted.append(rid)
                    results[rid] = Reply(r.code, r.message)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    results[rid] = Reply(exc.code, exc.message)
            if not accepted:
                await _rset(smtp)
                return results
            for line in extra:
                reply = await self.command(line)
                if not reply.ok:
                    await _rset(smtp)
                    return {rid: reply for rid in rids}
            try:
                response = await send_data(smtp, body)
                final = Reply(response.code, response.message)
            except aiosmtplib.SMTPDataError as exc:
                final = Reply(exc.code, exc.message)
                await _rset(smtp)  # leave the connection clean for the next message
            for rid in accepted:
                results[rid] = final
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise DeliveryError(f"connection lost during delivery: {_describe(exc)}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(f"{exc.code} {exc.message}", code=exc.code) from exc
        ok = [rid for rid in rids if results[rid].ok]
        if ok:
            self.log.info(f"MID {mid} RID {_rids(ok)} Response '{results[ok[0]].text}'")
            self.log.info(f"Message done DCID {self.dcid} MID {mid} to RID {_rids(ok)}"
                          + (f" {done_note}" if done_note else ""))
        return results

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                await smtp.quit()
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()
        self.log.info(f"DCID {self.dcid} close")


STREAM_ABOVE = 1024 * 1024  # a body larger than this is sent in chunks (`send_data`)
CHUNK = 256 * 1024


class BodySource(Protocol):
    """A body read a piece at a time (the spool's `BodyFile`): `send` streams it."""

    size: int

    def read(self) -> bytes: ...

    def pieces(self, chunk: int = CHUNK) -> Iterator[bytes]: ...


def cut_pieces(body: bytes, chunk: int = CHUNK) -> Iterator[bytes]:
    """*body* in pieces of about *chunk* bytes, each but the last cut after a CRLF (or, in
    a line longer than *chunk*, anywhere but between a CR and its LF)."""
    start, size = 0, len(body)
    while start < size:
        end = min(start + chunk, size)
        if end < size:
            crlf = body.rfind(b"\r\n", start, end)
            if crlf >= start:
                end = crlf + 2
            elif body[end - 1] == 0x0D:  # never between the CR and the LF of a CRLF
                end = end - 1 if end - 1 > start else end + 1
        yield body[start:end]
        start = end


def stuffed(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """*pieces* of a body (CRLF line ends only; cut as `cut_pieces` cuts) dot-stuffed
    (RFC 5321 4.5.2), then the end of the data (`.` CRLF, after a CRLF if the body does
    not end with one). Only one piece is a copy at any time."""
    line_start = True
    for piece in pieces:
        if not piece:
            continue
        piece = piece.replace(b"\r\n.", b"\r\n..") if b"\r\n." in piece else piece
        yield b"." + piece if line_start and piece.startswith(b".") else piece
        line_start = piece.endswith(b"\r\n")
    yield b".\r\n" if line_start else b"\r\n.\r\n"


def stuffed_chunks(body: bytes, chunk: int = CHUNK) -> Iterator[bytes]:
    """*body* (CRLF line ends only) dot-stuffed in pieces of about *chunk* bytes."""
    return stuffed(cut_pieces(body, chunk))


def _crlf_only(body: bytes) -> bool:
    pairs = body.count(b"\r\n")
    return body.count(b"\r") == pairs and body.count(b"\n") == pairs


async def send_data(smtp: aiosmtplib.SMTP, body: bytes | BodySource, *,
                    stream_above: int = STREAM_ABOVE, chunk: int = CHUNK
                    ) -> aiosmtplib.SMTPResponse:
    """DATA with *body*: as aiosmtplib sends it, but a large body with CRLF line ends
    only goes out in dot-stuffed chunks (`stuffed`), each handed to the transport once
    the previous ones have drained, instead of as three whole copies (line ends,
    dot-stuffing, end marker) in the transport's buffer. A `BodySource` (a body in the
    spool) is read a piece at a time and never held whole."""
    protocol = smtp.protocol
    if isinstance(body, bytes):
        streamed = len(body) > stream_above and _crlf_only(body)
        pieces: Iterable[bytes] = cut_pieces(body, chunk) if streamed else ()
    else:
        streamed = body.size > stream_above and all(map(_crlf_only, body.pieces(chunk)))
        pieces = body.pieces(chunk) if streamed else ()
    if not streamed or protocol is None:
        return await smtp.data(body if isinstance(body, bytes) else body.read())
    lock = protocol._command_lock
    if lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    timeout = smtp.timeout
    try:
        async with lock:
            protocol._response_pending = True
            protocol.write(b"DATA\r\n")
            start = await protocol.read_response(timeout=timeout)
            if start.code != aiosmtplib.SMTPStatus.start_input:
                raise aiosmtplib.SMTPDataError(start.code, start.message)
            protocol._response_pending = True  # a reply during the data is kept
            for piece in stuffed(pieces):
                protocol.write(piece)
                await protocol._drain_helper()
            response = await protocol.read_response(timeout=timeout)
            if response.code != aiosmtplib.SMTPStatus.completed:
                raise aiosmtplib.SMTPDataError(response.code, response.message)
            return response
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError):
        smtp.close()
        raise


async def _rset(smtp: aiosmtplib.SMTP) -> None:
    # A server that refused and hung up leaves the replies already received
    # valid; the next message on this connection finds the link closed.
    with contextlib.suppress(aiosmtplib.SMTPException, OSError):
        await smtp.rset()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"verify error: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return getattr(exc, "reason", None) or str(exc)
    cause = exc.__cause__
    text = str(exc) or type(exc).__name__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({cause})"
    return text
