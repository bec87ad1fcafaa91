"""One outgoing SMTP connection (a DCID), logged like AsyncOS, pipelining when it may.

Owns the connection-level lines (`New SMTP DCID`, `TLS success`, `TLS
failed`, `DCID close`) and the per-transaction ones (`Delivery start`,
`Response`, `Message done`). It never decides whether to retry: it reports,
per recipient, what the server answered, and raises `DeliveryError` when the
connection as a whole failed.

A transaction to a server whose EHLO offers PIPELINING (RFC 2920) goes out as
one write (MAIL, every RCPT, the `extra` lines such as `XCPQ META`, DATA),
its replies are read in order, then the body and the final reply follow: two
round trips instead of four plus one per recipient and extra line. Without
PIPELINING, one command at a time. The bytes are `smtp.wire`'s.

A connection made with `pipeline_transactions` (a CPQ one), to a server that
offers both PIPELINING and CHUNKING, sends a message of up to `STREAM_ABOVE`
bytes as one write: MAIL, every RCPT, the extra lines, `BDAT <size> LAST` and
the message, with no wait at all. Up to `TRANSACTIONS_IN_FLIGHT` such
transactions may then be under way on the connection at once (`in_flight`):
each `send` writes its own the moment it is called and reads its replies after
those of the transactions written before it (the server answers in order).
Such a server ends the transaction at `BDAT ... LAST` whatever it answers, so
a refused one needs no RSET. A larger message, or one to another server, goes
by DATA as above, alone on the connection: it waits for the transactions in
flight and holds later ones back until its reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from pvoq import metrics
from pvoq.errors import TemporaryFailure
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.wire import (
    CHUNK,
    STREAM_ABOVE,
    BodySource,
    Reply,
    SmtpWire,
    crlf,
    cut_pieces,
    stuffed,
    stuffed_chunks,
    write_body,
)

__all__ = ["CHUNK", "STREAM_ABOVE", "BodySource", "DeliveryError", "Reply", "SmtpConnection",
           "TlsPolicy", "cut_pieces", "send_data", "stuffed", "stuffed_chunks"]

# Transactions one connection may have under way at once, when it may (`in_flight`): 16
# keeps a manager's event loop busy while the batch before is committed (8 left it idle
# about half the time, waiting for the commit; docs/benchmarks.md, "16 in flight").
# Each holds a message of at most `STREAM_ABOVE` (1 MiB): 16 MiB a connection at most.
TRANSACTIONS_IN_FLIGHT = 16

# What the wire raises when the link fails (TimeoutError and ConnectionError are OSErrors).
LINK_ERRORS = (OSError, ssl.SSLError)

# An address that cannot go on an SMTP command line as it is (a space, an angle bracket,
# a control character or a non-ASCII one outside a quoted local part) is refused here,
# for its recipient or, the sender's, for all: nothing of it is sent.
BAD_SENDER = Reply(553, "5.1.7 the sender address cannot be sent on an SMTP command line")
BAD_RECIPIENT = Reply(553, "5.1.3 the recipient address cannot be sent on an SMTP command "
                           "line")


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


def _rids(rids: Sequence[int]) -> str:
    return "[" + ", ".join(str(r) for r in rids) + "]"


# A mailbox as it may stand between the angle brackets: printable ASCII but for `<`, `>`
# and `"`, after an optional quoted local part (which may hold spaces and escapes).
_SENDABLE = re.compile(r'(?:"(?:[ !#-\[\]-~]|\\[ -~])*")?[!#-;=?-~]*')


def path(address: str) -> str | None:
    """`<address>` for MAIL FROM or RCPT TO, or None when it cannot go on a command line."""
    address = address.strip()
    return f"<{address}>" if _SENDABLE.fullmatch(address) else None


class SmtpConnection:
    """A delivery connection that can carry several transactions."""

    def __init__(self, *, maillog: MailLog, ids: IdAllocator, local_hostname: str,
                 label: str, tls: TlsPolicy, timeout_s: float,
                 source_ip: str | None = None, pipeline_transactions: bool = False) -> None:
        self.log = maillog
        self.ids = ids
        self.local_hostname = local_hostname
        self.label = label
        self.tls = tls
        self.timeout_s = timeout_s
        self.source_ip = source_ip
        self.dcid = 0
        self.extensions: dict[str, str] = {}  # the last EHLO's keywords (lower case)
        self.pipeline_transactions = pipeline_transactions
        self._wire: SmtpWire | None = None
        # Transactions in flight: a DATA one holds `_alone` from its start to its reply
        # (a BDAT one only while it writes); `_last_read` is done once the transaction
        # written last has read its replies.
        self._alone = asyncio.Lock()
        self._last_read: asyncio.Future[None] | None = None

    async def open(self, host: str, port: int) -> None:
        self.dcid = self.ids.next("dcid")
        wire: SmtpWire | None = None
        try:
            try:
                wire = await SmtpWire.connect(host, port, timeout_s=self.timeout_s,
                                              source_ip=self.source_ip)
            except TimeoutError:
                raise ConnectionError(f"Timed out connecting to {host} on port {port}") from None
            except OSError as exc:
                raise ConnectionError(f"Error connecting to {host} on port {port}: {exc}"
                                      ) from None
            greeting = await wire.reply()
            details = None if greeting.code == 220 else f"{greeting.code} {greeting.text}"
        except LINK_ERRORS as exc:
            details = _describe(exc)
        if details is not None:
            if wire is not None:
                wire.close()
            self.log.info(f"Connection error: DCID {self.dcid} domain: {self.label} IP: {host} "
                          f"port: {port} details: {details} interface: "
                          f"{self.source_ip or 'default'}")
            raise DeliveryError(f"connection to {host}:{port} failed: {details}")
        assert wire is not None
        self._wire = wire
        local = wire.sockname() or ("?", 0)
        self.log.info(f"New SMTP DCID {self.dcid} interface {local[0]} address {host} port {port}")
        try:
            await self._ehlo()
            if self.tls.required:
                try:
                    await self._start_tls(host)
                except DeliveryError:
                    metrics.tls_failure(self.label)
                    raise
                await self._ehlo()
        except DeliveryError:
            await self.close()
            raise
        except LINK_ERRORS as exc:
            await self.close()
            raise DeliveryError(_describe(exc)) from exc

    async def _ehlo(self) -> None:
        wire = self._wire
        assert wire is not None
        reply = await wire.command(f"EHLO {self.local_hostname}")
        if reply.code != 250:
            raise DeliveryError(f"{reply.code} {reply.text}")
        self.extensions = {}
        for line in reply.text.split("\n")[1:]:
            keyword, _, params = line.strip().partition(" ")
            if keyword:
                self.extensions[keyword.lower()] = params

    async def _start_tls(self, host: str) -> None:
        wire = self._wire
        assert wire is not None
        required = f"DCID {self.dcid} TLS was required but could not be successfully negotiated"
        if not self.supports("starttls"):
            self.log.info(f"DCID {self.dcid} TLS failed: the server does not offer STARTTLS")
            self.log.info(required)
            raise DeliveryError("TLS required: STARTTLS not offered")
        try:
            reply = await wire.command("STARTTLS")
            if reply.code != 220:
                reason = f"{reply.code} {reply.text}"
            else:
                context = self.tls.context or ssl.create_default_context()
                await wire.start_tls(context, server_hostname=host)
                reason = ""
        except LINK_ERRORS as exc:
            reason = _describe(exc)
        if reason:
            self.log.info(f"DCID {self.dcid} TLS failed: {reason}")
            self.log.info(required)
            raise DeliveryError(f"TLS required: {reason}")
        ssl_object = wire.ssl_object
        cert = ssl_object.getpeercert() if ssl_object is not None else None
        if not cert:
            # An anonymous cipher completes the handshake without any
            # certificate: the peer is unauthenticated, so refuse to deliver.
            self.log.info(f"DCID {self.dcid} TLS failed: verify error: no certificate from server")
            self.log.info(required)
            raise DeliveryError("TLS required: no certificate from server")
        assert ssl_object is not None
        cipher = ssl_object.cipher()
        self.log.info(f"DCID {self.dcid} TLS success protocol {ssl_object.version()} "
                      f"cipher {cipher[0] if cipher else '?'} {self.label}")

    @property
    def peer_certificate(self) -> dict | None:
        ssl_object = self._wire.ssl_object if self._wire is not None else None
        return ssl_object.getpeercert() if ssl_object is not None else None

    def supports(self, keyword: str) -> bool:
        return self._wire is not None and keyword.lower() in self.extensions

    @property
    def chunks_pipelined(self) -> bool:
        """Whether a small message goes by BDAT with the next transactions behind it."""
        return self.pipeline_transactions and "chunking" in self.extensions \
            and "pipelining" in self.extensions

    @property
    def in_flight(self) -> int:
        """How many `send`s may be under way on this connection at once."""
        return TRANSACTIONS_IN_FLIGHT if self._wire is not None and self.chunks_pipelined \
            else 1

    async def command(self, line: str) -> Reply:
        """*line* sent alone and its reply; DeliveryError if the link fails."""
        assert self._wire is not None
        try:
            return await self._wire.command(line)
        except LINK_ERRORS as exc:
            self._wire.close(exc)
            raise DeliveryError(f"connection lost: {_describe(exc)}") from exc

    async def send(self, *, mid: int, sender: str, recipients: Sequence[tuple[int, str]],
                   body: bytes | BodySource, extra: Sequence[str] = (), start_note: str = "",
                   done_note: str = "") -> dict[int, Reply]:
        """One transaction; the answer for each RID. Raises DeliveryError if the link fails."""
        wire = self._wire
        assert wire is not None
        rids = [rid for rid, _ in recipients]
        self.log.info(f"Delivery start DCID {self.dcid} MID {mid} to RID {_rids(rids)}"
                      + (f" {start_note}" if start_note else ""))
        try:
            results = await self._transaction(wire, sender, recipients, body, extra)
        except LINK_ERRORS as exc:
            wire.close(exc)
            raise DeliveryError(f"connection lost during delivery: {_describe(exc)}") from exc
        ok = [rid for rid in rids if results[rid].ok]
        if ok:
            self.log.info(f"MID {mid} RID {_rids(ok)} Response '{results[ok[0]].text}'")
            self.log.info(f"Message done DCID {self.dcid} MID {mid} to RID {_rids(ok)}"
                          + (f" {done_note}" if done_note else ""))
        return results

    async def _transaction(self, wire: SmtpWire, sender: str,
                           recipients: Sequence[tuple[int, str]], body: bytes | BodySource,
                           extra: Sequence[str]) -> dict[int, Reply]:
        rids = [rid for rid, _ in recipients]
        mail_from = path(sender)
        if mail_from is None:
            return {rid: BAD_SENDER for rid in rids}
        results: dict[int, Reply] = {}
        to: list[tuple[int, str]] = []
        for rid, address in recipients:
            rcpt_to = path(address)
            if rcpt_to is None:
                results[rid] = BAD_RECIPIENT
            else:
                to.append((rid, rcpt_to))
        if not to:
            return results
        size = len(body) if isinstance(body, bytes) else body.size
        if size <= STREAM_ABOVE and self.chunks_pipelined:
            return await self._chunked(wire, mail_from, to, body, extra, rids, results)
        async with self._alone:  # after the transactions in flight, before any later one
            if self._last_read is not None:
                await self._last_read
            if "pipelining" in self.extensions:
                return await self._pipelined(wire, mail_from, to, body, extra, rids, results)
            return await self._one_by_one(wire, mail_from, to, body, extra, rids, results)

    async def _chunked(self, wire: SmtpWire, mail_from: str, to: list[tuple[int, str]],
                       body: bytes | BodySource, extra: Sequence[str], rids: list[int],
                       results: dict[int, Reply]) -> dict[int, Reply]:
        """The whole transaction in one write, its replies read after those of the
        transactions written before it."""
        data = crlf(body if isinstance(body, bytes) else body.read())
        lines = [f"MAIL FROM:{mail_from}", *(f"RCPT TO:{p}" for _, p in to), *extra,
                 f"BDAT {len(data)} LAST"]
        head = "".join(line + "\r\n" for line in lines).encode("ascii")
        async with self._alone:  # not in the middle of a DATA transaction's exchange
            before = self._last_read
            mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._last_read = mine
            wire.write(head + data)
        replies: list[Reply] = []
        try:
            await wire.drain()
            if before is not None:
                await before
            for _ in lines:
                replies.append(await wire.reply())
        except BaseException as exc:
            if len(replies) < len(lines):  # the replies of the later ones cannot be told
                wire.close(exc if isinstance(exc, Exception) else None)
            raise
        finally:
            mine.set_result(None)
            if self._last_read is mine:
                self._last_read = None
        refused = _refusal(replies, to, len(extra), rids, results)
        if refused is None:  # a 354 to BDAT: not a server this exchange can go on with
            failure = ConnectionError(f"the server answered BDAT with {replies[-1].code}")
            wire.close(failure)
            raise failure
        return refused

    async def _one_by_one(self, wire: SmtpWire, mail_from: str, to: list[tuple[int, str]],
                          body: bytes | BodySource, extra: Sequence[str], rids: list[int],
                          results: dict[int, Reply]) -> dict[int, Reply]:
        mail = await wire.command(f"MAIL FROM:{mail_from}")
        if mail.code != 250:
            await _rset(wire)
            return {rid: mail for rid in rids}
        accepted: list[int] = []
        for rid, rcpt_to in to:
            results[rid] = await wire.command(f"RCPT TO:{rcpt_to}")
            if results[rid].code in (250, 251):
                accepted.append(rid)
        if not accepted:
            await _rset(wire)
            return results
        for line in extra:
            reply = await wire.command(line)
            if not reply.ok:
                await _rset(wire)
                return {rid: reply for rid in rids}
        final = await send_data(wire, body)
        if final.code != 250:
            await _rset(wire)  # leave the connection clean for the next message
        for rid in accepted:
            results[rid] = final
        return results

    async def _pipelined(self, wire: SmtpWire, mail_from: str, to: list[tuple[int, str]],
                         body: bytes | BodySource, extra: Sequence[str], rids: list[int],
                         results: dict[int, Reply]) -> dict[int, Reply]:
        lines = [f"MAIL FROM:{mail_from}", *(f"RCPT TO:{p}" for _, p in to), *extra, "DATA"]
        wire.write("".join(line + "\r\n" for line in lines).encode("ascii"))
        replies: list[Reply] = []
        try:
            for _ in lines:
                replies.append(await wire.reply())
        except LINK_ERRORS as exc:
            # A refusal already read stands (a server may refuse, then hang up); the
            # next message on this connection finds the link closed.
            refused = _refusal(replies, to, len(extra), rids, results)
            if refused is None:
                raise
            wire.close(exc)
            return refused
        refused = _refusal(replies, to, len(extra), rids, results)
        if refused is not None:
            if replies[-1].code == 354:
                # The server waits for a body that must not be sent: the only way out of
                # its DATA phase without a message is to hang up.
                wire.close(ConnectionAbortedError(
                    "closed after a refused transaction whose DATA the server accepted"))
            else:
                await _rset(wire)
            return refused
        await write_body(wire, body)
        final = await wire.reply()
        if final.code != 250:
            await _rset(wire)
        for rid, _ in to:
            if results[rid].code in (250, 251):
                results[rid] = final
        return results

    async def close(self) -> None:
        wire, self._wire = self._wire, None
        self.extensions = {}
        if wire is None:
            return
        under_way = self._alone.locked() or (self._last_read is not None
                                              and not self._last_read.done())
        if wire.usable and not under_way:  # a QUIT's reply could not be told from theirs
            with contextlib.suppress(*LINK_ERRORS):
                await wire.command("QUIT")
        wire.close()
        self.log.info(f"DCID {self.dcid} close")


def _refusal(replies: list[Reply], to: list[tuple[int, str]], extras: int, rids: list[int],
             results: dict[int, Reply]) -> dict[int, Reply] | None:
    """The answers of a pipelined transaction that *replies* (in order: MAIL, each RCPT,
    each extra line, DATA; maybe not all yet) already refuse, without a body; None if
    nothing refused it so far. Fills *results* with the RCPT replies read."""
    if not replies:
        return None
    mail = replies[0]
    if mail.code != 250:
        return {rid: mail for rid in rids}
    rcpts = replies[1:1 + len(to)]
    for (rid, _), reply in zip(to, rcpts, strict=False):
        results[rid] = reply
    if len(rcpts) < len(to):
        return None
    if not any(r.code in (250, 251) for r in rcpts):
        return results  # DATA's 503/554 says nothing more
    for reply in replies[1 + len(to):1 + len(to) + extras]:
        if not reply.ok:
            return {rid: reply for rid in rids}
    if len(replies) < 2 + len(to) + extras:
        return None
    data = replies[-1]
    if data.code == 354:
        return None
    for rid, _ in to:
        if results[rid].code in (250, 251):
            results[rid] = data
    return results


async def send_data(wire: SmtpWire, body: bytes | BodySource, *,
                    stream_above: int = STREAM_ABOVE, chunk: int = CHUNK) -> Reply:
    """DATA alone, then *body* (`write_body`: a large one in pieces, drained one by one)
    and the final reply; the reply to DATA if it is not 354."""
    start = await wire.command("DATA")
    if start.code != 354:
        return start
    await write_body(wire, body, stream_above=stream_above, chunk=chunk)
    return await wire.reply()


async def _rset(wire: SmtpWire) -> None:
    # A server that refused and hung up leaves the replies already received
    # valid; the next message on this connection finds the link closed.
    with contextlib.suppress(*LINK_ERRORS):
        await wire.command("RSET")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"verify error: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return getattr(exc, "reason", None) or str(exc)
    cause = exc.__cause__
    text = str(exc) or type(exc).__name__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({cause})"
    return text
