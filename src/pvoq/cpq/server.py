"""The receiving side of CPQ: a `cpq_listener` session.

A subclass of our SMTP session, the way aiosmtpd's LMTP is a subclass of its
SMTP: STARTTLS is required before anything else (`530` otherwise), the peer
must present a certificate of the CPQ CA (`554` otherwise), and one extra
command, `XCPQ`, carries the metadata (`XCPQ META`) or asks a question
(`XCPQ CHECK`). The `XCPQ` EHLO keyword is offered only after STARTTLS, and so
is `CHUNKING`: a message may come by BDAT, and then the gateway may send its
next transfers without waiting for the reply to the one before
(`smtp.chunking`), so that the manager stores the transfers of one connection
together.

What an accepted transfer becomes (a quarantined message on the manager, a
released one on a gateway) is the handler's business (`CpqHandler.store`).
"""

from __future__ import annotations

from typing import Any

from aiosmtpd.smtp import Session, syntax

from pvoq.cpq import replies
from pvoq.cpq.ca import peer_common_name
from pvoq.cpq.metadata import MAX_CHUNKS, MetadataError, decode_transfer
from pvoq.cpq.transfer import Transfer
from pvoq.smtp import replies as smtp_replies
from pvoq.smtp.chunking import ChunkingSMTP
from pvoq.smtp.replies import StatusCode
from pvoq.smtp.server import BaseHandler, MessageInfo, PvoqEnvelope, PvoqSession, PvoqSMTP

REASON_CHARS = 200  # of a metadata refusal's reason, in the 554 line and the log


class CpqSMTP(ChunkingSMTP):
    """SMTP + STARTTLS required + `XCPQ` (+ BDAT)."""

    # "XCPQ META " + a chunk + CRLF stays within an SMTP text line (1,000 octets).
    extra_command_size_limits = {"XCPQ": 1000}
    trace_headers = False  # a transfer is stored and relayed byte-identical: no `Received:`

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, require_starttls=True, **kwargs)
        self._in_data = False  # DATA's own replies are never held (see `push`)

    async def push(self, status: str | bytes | StatusCode) -> None:
        """Send a reply; a `250` with more commands already read waits for their replies.

        A gateway pipelines MAIL, RCPT, the `XCPQ META` lines and DATA in one
        write: their replies (`250` … `354`) then leave in one write too, not
        one TLS record and one system call each. Only `250`s wait (never a
        `220` before TLS, an error or a `421` before a close), and only while a
        whole command line is buffered: its own reply follows at once. DATA's
        replies never wait: its final reply is the message's, and what follows it
        is the next transaction or a pipelining error.
        """
        if isinstance(status, StatusCode):
            status = str(status)
        line = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") \
            if isinstance(status, str) else status
        if line[:4] == b"250 " and not self._in_data and self._commands_waiting():
            self._reply_lines.append(line)  # written with the next reply, in order
            return
        await super().push(line)

    def _commands_waiting(self) -> bool:
        buffered: bytearray | None = getattr(self._reader, "_buffer", None)  # asyncio's
        return buffered is not None and b"\n" in buffered

    @syntax("XCPQ META <base64-chunk> | XCPQ CHECK")
    async def smtp_XCPQ(self, arg: str | None) -> None:  # aiosmtpd naming
        verb, _, rest = (arg or "").partition(" ")
        verb = verb.upper()
        envelope = self.envelope
        assert isinstance(envelope, PvoqEnvelope)
        if verb == "META":
            if not envelope.mail_from:
                await self.push(replies.META_NEEDS_MAIL)
            elif not rest.strip():
                await self.push(replies.META_SYNTAX)
            elif len(envelope.cpq_chunks) >= MAX_CHUNKS:
                await self.push(replies.TOO_MUCH_METADATA)
            else:
                envelope.cpq_chunks.append(rest.strip())
                await self.push(replies.META_CHUNK_ACCEPTED.format(n=len(envelope.cpq_chunks)))
        elif verb == "CHECK":
            status = await self._call_handler_hook("XCPQ_CHECK", rest.strip())
            await self.push(status)
        else:
            await self.push(replies.XCPQ_SYNTAX)

    def check_message(self, envelope: PvoqEnvelope) -> str | None:
        """The transfer's metadata decoded (kept on the envelope for the handler), or the
        refusal of what can never succeed: before DATA's 354, so that no body is read,
        stored or left behind; after a BDAT message, before it is stored."""
        if not envelope.mail_from or not envelope.rcpt_tos:
            return None  # DATA or BDAT answers that itself
        try:
            envelope.cpq_transfer = decode_transfer(envelope.cpq_chunks)
        except MetadataError as exc:
            # The reason quotes the peer: bounded and ASCII on the wire and in the log.
            reason = str(exc).encode("ascii", "backslashreplace").decode("ascii")
            reason = reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS] + "..."
            self.context.maillog.info(f"MID {envelope.mid} CPQ metadata refused: {reason}")
            self.context.maillog.info(f"Message finished MID {envelope.mid} aborted")
            return replies.METADATA_REFUSED.format(reason=reason)
        return None

    async def smtp_DATA(self, arg: str) -> None:
        self._in_data = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self._in_data = False


class CpqHandler(BaseHandler):
    """Hooks of a `cpq_listener`: the TLS peer check, XCPQ, and the store."""

    async def handle_EHLO(self, server: PvoqSMTP, session: Session, envelope: Any,
                          hostname: str, responses: list[str]) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        if session.ssl is not None:
            responses.insert(len(responses) - 1, replies.XCPQ_KEYWORD.more())
            if isinstance(server, ChunkingSMTP):
                responses.insert(len(responses) - 1, smtp_replies.CHUNKING.more())
        return responses

    def handle_STARTTLS(self, server: PvoqSMTP, session: PvoqSession,
                        envelope: Any) -> bool:
        """Called by aiosmtpd after the handshake: refuse peers without a CPQ certificate."""
        ssl_object = (session.ssl or {}).get("ssl_object")
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        log = self.context.maillog
        if not cert:
            session.tls_failed = "no certificate from client"
            log.info(f"ICID {session.icid} TLS failed: verify error: no certificate from client")
            return False
        session.peer_certificate = cert
        protocol = ssl_object.version() if ssl_object is not None else "unknown"
        cipher = ssl_object.cipher()[0] if ssl_object is not None and ssl_object.cipher() else "?"
        log.info(f"ICID {session.icid} TLS success protocol {protocol} cipher {cipher} "
                 f"peer {peer_common_name(cert)}")
        return True

    async def handle_XCPQ_CHECK(self, server: PvoqSMTP, session: PvoqSession,
                                envelope: Any, arg: str) -> str:
        """The readiness check behind the gateway's "Enable" button."""
        peer = peer_common_name(session.peer_certificate) or "unknown peer"
        problems = self.readiness(session)
        log = self.context.maillog
        if problems:
            log.info(f"ICID {session.icid} CPQ readiness check for {peer}: not ready: "
                     + "; ".join(problems))
            return replies.NOT_READY.format(problems="; ".join(problems))
        log.info(f"ICID {session.icid} CPQ readiness check for {peer}: ready")
        return replies.READY.format(peer=peer)

    def readiness(self, session: PvoqSession) -> list[str]:
        """What stops the peer from using this appliance over CPQ (empty: ready)."""
        return []

    async def accept(self, server: PvoqSMTP, session: PvoqSession, envelope: PvoqEnvelope,
                     content: bytes, info: MessageInfo) -> str:
        transfer = envelope.cpq_transfer or decode_transfer(envelope.cpq_chunks)
        return await self.store(session, envelope, transfer, content, info)

    async def store(self, session: PvoqSession, envelope: PvoqEnvelope, transfer: Transfer,
                    content: bytes, info: MessageInfo) -> str:
        """Store an accepted *transfer* (checked at DATA); the reply to send."""
        raise NotImplementedError
