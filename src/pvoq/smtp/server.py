"""SMTP server sessions: aiosmtpd plus what an AsyncOS listener does around it.

Owns, for every listener (public, private and the CPQ one): ICIDs and their
`New SMTP ICID` / `New CPQ ICID` lines, the HAT decision at connect time
(REJECT answers 554 and closes, TCPREFUSE closes at once), the RAT at RCPT,
MIDs from MAIL FROM on with AsyncOS tracking lines, the session limits
(junk commands, session lifetime, a CPQ listener's STARTTLS deadline,
commands pipelined after DATA: each answered 421 or 554 and the connection
closed, with an `ICID <icid> Receiving Failed: …` line), the `ICID <icid> TLS
success …` / `TLS failed: …` lines of STARTTLS, the `Received:` line on top
of each message a listener other than a CPQ one accepts (`smtp.received`
builds it; written when DATA starts and counted against the size limit), and
the `ICID close` line. What happens to an accepted message is the handler's
`accept()`; this module never writes a spool or a quarantine itself.

What a session carries (`ServerContext`, `PvoqSession`, `PvoqEnvelope`) is
in `smtp.session`, the headers read from each message in `smtp.message`, a
session's set-up in `smtp.setup`; their names are re-exported here.
"""

from __future__ import annotations

import asyncio
import collections
import re
import socket
import ssl
from collections.abc import Callable
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.smtp import MISSING, Envelope, Session, TLSSetupException, syntax

from pvoq.config.hat import HatDecision, match_hat, match_rat, names_hosts
from pvoq.config.model import Listener
from pvoq.smtp import replies, starttls
from pvoq.smtp.data import FAILED, NOMINAL, TOO_LONG, read_data
from pvoq.smtp.headers import log_safe
from pvoq.smtp.limits import JUNK_REPLIES, MAX_RECIPIENTS, LimitedSMTP, address_fault
from pvoq.smtp.message import MessageInfo, has_bare_newline, message_info
from pvoq.smtp.received import received_header
from pvoq.smtp.replies import StatusCode
from pvoq.smtp.session import (
    HookNames,
    PvoqEnvelope,
    PvoqSession,
    ServerContext,
    tls_info,
)

# Re-exported: the names other parts import from here.
__all__ = ["BaseHandler", "ConnectionGate", "HookNames", "MessageInfo", "PvoqEnvelope",
           "PvoqSMTP", "PvoqSession", "ServerContext", "message_info", "reverse_dns",
           "start_listener", "tls_info"]


class ConnectionGate:
    """A listener's open sessions, counted against its `max_connections`."""

    def __init__(self) -> None:
        self.sessions: set[PvoqSMTP] = set()

    @property
    def active(self) -> int:
        return len(self.sessions)

    def close_all(self) -> int:
        """Close every open session (suspendlisteners after its delay); return how many."""
        closing = [s for s in self.sessions if s.transport is not None]
        for session in closing:
            assert session.transport is not None
            session.transport.close()
        return len(closing)


# `<dot-atom@domain>` and its parameters: the paths nearly every client sends.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
                          r"(?:[ \t]+(.*?))?[ \t]*\Z", re.S)


class PvoqSMTP(HookNames, LimitedSMTP):
    """An aiosmtpd session that logs and enforces like an AsyncOS listener."""

    extra_command_size_limits: dict[str, int] = {}
    dir_prefixes = ("auth_",)  # the commands: `LimitedSMTP`'s table, made once per class
    trace_headers = True  # False: never a `Received:` line, whatever the listener says

    def __init__(self, handler: Any, *, listener: Listener, interface_ip: str,
                 context: ServerContext, gate: ConnectionGate | None = None,
                 **kwargs: Any) -> None:
        self.listener = listener
        self.interface_ip = interface_ip
        self.context = context
        self.gate = gate or ConnectionGate()
        self._counted = False
        self._refusal: StatusCode | None = None  # a policy limit's reply: refused at once
        self.tls_unavailable = False    # TLS required by the policy, no certificate to offer
        self._reply_lines: list[bytes] = []  # a multi-line reply being gathered (push)
        # RFC 5321 4.4: a `Received:` line on top of each accepted message (not on CPQ).
        self.adds_received = self.trace_headers and listener.received_header \
            and not listener.is_cpq
        super().__init__(handler, hostname=context.hostname, ident="pvoq ESMTP",
                         data_size_limit=listener.max_message_size,
                         timeout=listener.timeout_seconds, **kwargs)
        # aiosmtpd keeps these limits in a class-level dict that every EHLO
        # grows; give each session its own (RFC 5321 4.5.3.1.4: 512 octets).
        self.command_size_limits = collections.defaultdict(
            lambda: self.command_size_limit, self.extra_command_size_limits)

    def _create_session(self) -> Session:
        fresh = PvoqSession(self.loop)
        old = self.session
        if isinstance(old, PvoqSession) and self._original_transport is not None:
            # STARTTLS re-enters connection_made (RFC 3207 resets the SMTP
            # state) but it is the same connection: keep its identity.
            fresh.icid, fresh.decision, fresh.peer_ip = old.icid, old.decision, old.peer_ip
            fresh.reverse_name = old.reverse_name
        return fresh

    def _create_envelope(self) -> Envelope:
        return PvoqEnvelope()

    def psession(self) -> PvoqSession:
        assert isinstance(self.session, PvoqSession)
        return self.session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        starttls_reentry = self._original_transport is not None
        super().connection_made(transport)
        if starttls_reentry:
            return
        session = self.psession()
        peer = transport.get_extra_info("peername") or ("", 0)
        session.peer_ip = str(peer[0])
        session.icid = self.context.ids.next("icid")
        # Counted here, at once, so that concurrent arrivals see each other.
        if self.gate.active < self.listener.max_connections:
            self.gate.sessions.add(self)
            self._counted = True
        self.start_limit_timers()

    async def _admit(self) -> None:
        """The connection's first lines: who it is (reverse DNS if the HAT needs names),
        then the HAT's decision and the mail-flow policy's parameters."""
        session = self.psession()
        log = self.context.maillog
        host, verified = None, False
        if names_hosts(self.listener.hat):
            host, verified = await reverse_dns(_plain_ip(session.peer_ip))
        session.reverse_name = host if verified else None
        kind = "CPQ" if self.listener.is_cpq else "SMTP"
        log.info(f"New {kind} ICID {session.icid} interface {self.listener.interface_name} "
                 f"({self.interface_ip}) address {session.peer_ip} "
                 f"reverse dns host {host or 'unknown'} verified {'yes' if verified else 'no'}")
        if not self._counted:
            log.info(f"ICID {session.icid} refused: {self.listener.max_connections} concurrent "
                     f"connections on listener {self.listener.name}")
            return
        session.decision = match_hat(self.listener.hat, _plain_ip(session.peer_ip),
                                     host if verified else None)
        d = session.decision
        log.info(f"ICID {session.icid} {d.action} SG {d.group} match {d.rule} SBRS none")
        if d.action in ("ACCEPT", "RELAY"):
            self._apply_policy(session, d)

    def _apply_policy(self, session: PvoqSession, decision: HatDecision) -> None:
        """The mail-flow policy's parameters: connection limits, message size, TLS."""
        params = decision.policy.params
        log = self.context.maillog
        others = [x for x in self.gate.sessions if x is not self]
        per_ip = params.get("max_conn_per_ip")
        if per_ip is not None:
            same = sum(1 for x in others if x.psession().peer_ip == session.peer_ip)
            if same >= int(per_ip):
                log.info(f"ICID {session.icid} refused: {same} concurrent connections from "
                         f"{session.peer_ip} (policy {decision.policy.name} max_conn_per_ip "
                         f"{per_ip})")
                self._refusal = replies.TOO_MANY_FROM_HOST
                return
        concurrency = params.get("max_concurrency")
        if concurrency is not None:
            same = sum(1 for x in others if (xd := x.psession().decision) is not None
                       and xd.policy.name == decision.policy.name)
            if same >= int(concurrency):
                log.info(f"ICID {session.icid} refused: {same} concurrent connections with "
                         f"policy {decision.policy.name} (max_concurrency {concurrency})")
                self._refusal = replies.TOO_MANY_FOR_POLICY
                return
        size = params.get("max_msg_size")
        if size is not None:
            self.data_size_limit = min(self.data_size_limit or int(size), int(size))
        tls = params.get("tls")
        if self.listener.is_cpq:
            return  # CPQ requires TLS whatever the policy says
        if tls == "off":
            self.tls_context = None
            self.require_starttls = False
        elif tls == "required":
            if self.tls_context is not None:
                self.require_starttls = True
            else:
                self.tls_unavailable = True
                log.info(f"ICID {session.icid} TLS required by policy {decision.policy.name} "
                         f"but listener {self.listener.name} has no certificate")

    async def _handle_client(self) -> None:
        await self._admit()
        if self._refusal is not None:
            await self.push(self._refusal)
            assert self.transport is not None
            self.transport.close()
            return
        if not self._counted:
            await self.push(replies.TOO_MANY_CONNECTIONS)
            assert self.transport is not None
            self.transport.close()
            return
        decision = self.psession().decision
        if decision is not None and decision.action == "TCPREFUSE":
            assert self.transport is not None
            self.transport.close()
            return
        if decision is not None and decision.action == "REJECT":
            await self.push(replies.HAT_REJECT.format(hostname=self.context.hostname))
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    def connection_lost(self, error: Exception | None) -> None:
        session = self.session
        self.cancel_limit_timers()
        if self._counted:
            self._counted = False
            self.gate.sessions.discard(self)
        super().connection_lost(error)
        if isinstance(session, PvoqSession) and session.icid:
            self.context.maillog.info(f"ICID {session.icid} close")

    async def push(self, status: str | bytes | StatusCode) -> None:
        """Send a reply; the lines of a multi-line reply (`250-…`) leave in one write,
        and so do the replies to a pipelined group (`LimitedSMTP.hold_reply`).

        aiosmtpd writes each line on its own, and on a busy listener every
        write is a system call that wakes the client: EHLO alone was seven.
        """
        if isinstance(status, StatusCode):
            status = str(status)
        line = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") \
            if isinstance(status, str) else status
        if line[3:4] == b"-" and b"\r\n" not in line:  # a handler's whole reply goes as is
            self._reply_lines.append(line)
            return
        if self._reply_lines:
            line = b"\r\n".join([*self._reply_lines, line])
            self._reply_lines.clear()
        if self.hold_reply(line):  # a pipelined group's replies leave together
            if line[:3] in JUNK_REPLIES:
                await self.replied(line)
            return
        writer = self._writer
        writer.write(self.with_held(line) + b"\r\n")
        # aiosmtpd awaits `drain()` after every reply; it returns at once (no yield) unless
        # one of these holds, so it is awaited only then: a coroutine less per reply.
        paused = self._paused or self._connection_lost  # type: ignore[attr-defined]
        if paused or writer.transport.is_closing() or self._reader.exception() is not None:
            await writer.drain()
        if line[:3] in JUNK_REPLIES:
            await self.replied(line)

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """aiosmtpd's STARTTLS, the handshake by the event loop's TLS (`smtp.starttls`)."""
        if arg:
            await self.push("501 Syntax: STARTTLS")
            return
        if not self.tls_context:
            await self.push("454 TLS not available")
            return
        await self.push("220 Ready to start TLS")
        await starttls.start_tls(self)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, with the message read as a block (`smtp.data`)."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push(replies.NEED_RCPT)
            return
        if arg:
            await self.push(replies.DATA_SYNTAX)
            return
        # The trace header is written when DATA starts (as Postfix does) and counts
        # against the size limit: what is stored, scanned and relayed stays within it.
        trace = self.trace_header()
        size_limit = self.data_size_limit
        if size_limit and trace:
            size_limit = max(1, size_limit - len(trace))
        await self.push(replies.START_DATA)
        block = await read_data(self._reader, size_limit=size_limit,
                                line_limit=self.line_length_limit, prefix=trace,
                                spill_dir=self.context.spill_dir)
        if block is None:
            return  # the connection ended in the middle of the data
        if block.state != NOMINAL:
            self._set_post_data_state()
            if block.state == FAILED:
                self.context.maillog.warning(
                    f"ICID {self.psession().icid} message refused: its temporary file "
                    f"failed: {block.error}")
                self.context.maillog.flush()
            await self.push(replies.LINE_TOO_LONG if block.state == TOO_LONG
                            else replies.LOCAL_ERROR if block.state == FAILED
                            else replies.TOO_MUCH_DATA)
            return
        content = block.content  # the trace header first
        self.envelope.content = self.envelope.original_content = content
        if isinstance(self.envelope, PvoqEnvelope):
            self.envelope.bare_newline = block.bare
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        reply = replies.DATA_OK if status is MISSING else status
        # Commands sent after the end of the data without waiting for its reply (RFC 2920
        # makes DATA's reply a synchronisation point): the message keeps its reply, the
        # commands are refused and the connection closed, as Postfix does.
        early = self.pipelined_after_data()
        if early:
            self.log_cut(f"improper command pipelining after DATA: {early!r}")
        self.context.maillog.flush()  # the client hears of its message after the log does
        await self.push(reply)
        if str(reply).startswith("2"):
            self.message_accepted()
        if early:
            await self.refuse_pipelined()

    def trace_header(self) -> bytes:
        """The `Received:` header this listener puts on top of the message (b"" if none)."""
        if not self.adds_received:
            return b""
        session = self.psession()
        envelope = self.envelope
        assert isinstance(envelope, PvoqEnvelope)
        return received_header(
            helo=session.host_name, reverse_name=session.reverse_name,
            client_ip=session.peer_ip, by=self.context.hostname,
            esmtp=bool(session.extended_smtp), tls=tls_info(session), mid=envelope.mid,
            recipients=envelope.rcpt_tos)

    def log_cut(self, reason: str) -> None:
        session = self.session
        icid = session.icid if isinstance(session, PvoqSession) else 0
        self.context.maillog.info(f"ICID {icid} Receiving Failed: {reason}")

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parsing: a plain `<local@domain>` at once, anything else
        by the email package's parser, as aiosmtpd does (without the class it
        defines at every call)."""
        if not arg:
            return "", ""
        simple = _SIMPLE_PATH.match(arg.lstrip())
        if simple is not None:
            addr, rest = simple.group(1), simple.group(2) or ""
        else:
            address: Any
            try:
                if arg.lstrip().startswith("<"):
                    address, rest = get_angle_addr(arg)
                else:
                    address, rest = get_addr_spec(arg)
            except HeaderParseError:
                return None, None
            addr = address.addr_spec
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        if address_fault(addr) is not None:
            return None, None
        return addr, rest

    async def smtp_RSET(self, arg: str) -> None:
        envelope = self.envelope
        if not arg and isinstance(envelope, PvoqEnvelope) and envelope.mid:
            # aiosmtpd forgets the envelope before its RSET hook runs: log here.
            self.context.maillog.info(f"Message finished MID {envelope.mid} aborted")
        await super().smtp_RSET(arg)

    async def handle_exception(self, error: Exception) -> str:
        session = self.psession()
        cause = error.__cause__ or error
        if isinstance(cause, ssl.SSLError):
            reason = getattr(cause, "reason", None) or str(cause)
            session.tls_failed = reason
            self.context.maillog.info(f"ICID {session.icid} TLS failed: {reason}")
            return str(replies.WRONG_TLS)
        if isinstance(error, TLSSetupException):
            # No TLS error: the client left (or stalled) during the handshake.
            reason = str(cause) if cause is not error and str(cause) else \
                "connection closed during the handshake"
            session.tls_failed = reason
            self.context.maillog.info(f"ICID {session.icid} TLS failed: {reason}")
            return str(replies.WRONG_TLS)
        self.context.maillog.warning(
            f"ICID {session.icid} application fault: {type(error).__name__}: {error}")
        return str(replies.LOCAL_ERROR)


async def reverse_dns(ip: str, *, timeout_s: float = 2.0) -> tuple[str | None, bool]:
    """(PTR name, verified): verified when the name resolves back to *ip* (FCrDNS)."""
    loop = asyncio.get_running_loop()
    try:
        name, _ = await asyncio.wait_for(
            loop.getnameinfo((ip, 0), socket.NI_NAMEREQD), timeout_s)
    except (TimeoutError, OSError):
        return None, False
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(name, None), timeout_s)
    except (TimeoutError, OSError):
        return name, False
    return name, any(info[4][0] == ip for info in infos)


def _plain_ip(ip: str) -> str:
    return ip[7:] if ip.startswith("::ffff:") else ip


class BaseHandler(HookNames):
    """aiosmtpd hooks shared by every listener: MIDs, RAT, tracking lines.

    Subclasses implement `accept()`, which must make the message durable
    before it returns a 2xx reply.
    """

    # True when `accept` can be abandoned at any await (a client that leaves) and
    # still finish what it must: it hands its follow-up to the spool commit.
    # Otherwise it runs as a task of its own, shielded from the session.
    commits_whole = False

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self._storing: set[asyncio.Future[str]] = set()

    def _after_disconnect(self, task: asyncio.Future[str], mid: int) -> None:
        log = self.context.maillog
        if task.cancelled():
            return
        if task.exception() is not None:
            exc = task.exception()
            log.warning(f"MID {mid} application fault: {type(exc).__name__}: {exc}")
        else:
            log.info(f"MID {mid} stored, but the client left before the reply "
                     f"('{task.result()}')")

    async def handle_EHLO(self, server: PvoqSMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        # aiosmtpd reads one command line at a time, so pipelined commands
        # (RFC 2920) are answered in order; say so.
        responses.insert(len(responses) - 1, replies.PIPELINING.more())
        # No SMTP AUTH: listeners decide by the HAT (and CPQ by certificate).
        auth = replies.AUTH.more()
        return [r for r in responses if not r.startswith(auth)]

    def handle_STARTTLS(self, server: PvoqSMTP, session: PvoqSession, envelope: Any) -> bool:
        """Called by aiosmtpd once the handshake is done: log it as AsyncOS does."""
        tls = tls_info(session)
        if tls is not None:
            self.context.maillog.info(f"ICID {session.icid} TLS success protocol "
                                      f"{tls.protocol} cipher {tls.cipher}")
        return True

    async def handle_MAIL(self, server: PvoqSMTP, session: PvoqSession,
                          envelope: PvoqEnvelope, address: str, options: list[str]) -> str:
        if server.tls_unavailable:
            return str(replies.TLS_UNAVAILABLE)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.mid = self.context.ids.next("mid")
        log = self.context.maillog
        log.info(f"Start MID {envelope.mid} ICID {session.icid}")
        log.info(f"MID {envelope.mid} ICID {session.icid} From: <{log_safe(address)}>")
        return str(replies.SENDER_OK)

    async def handle_RCPT(self, server: PvoqSMTP, session: PvoqSession,
                          envelope: PvoqEnvelope, address: str, options: list[str]) -> str:
        log = self.context.maillog
        entry = match_rat(server.listener.rat, address)
        shown = log_safe(address)
        if entry is None or entry.access != "ACCEPT":
            log.info(f"MID {envelope.mid} ICID {session.icid} To: <{shown}> Rejected by RAT")
            return str(replies.RCPT_REJECTED)
        policy = session.decision.policy if session.decision is not None else None
        limit = policy.params.get("max_rcpts_per_msg") if policy is not None else None
        if policy is not None and limit is not None and len(envelope.rcpt_tos) >= int(limit):
            log.info(f"MID {envelope.mid} ICID {session.icid} To: <{shown}> Rejected: "
                     f"max_rcpts_per_msg {limit} reached (policy {policy.name})")
            return str(replies.TOO_MANY_RECIPIENTS)
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            log.info(f"MID {envelope.mid} ICID {session.icid} To: <{shown}> Rejected: "
                     f"{MAX_RECIPIENTS} recipients per message reached")
            return str(replies.TOO_MANY_RECIPIENTS)
        rid = len(envelope.rcpt_tos)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        log.info(f"MID {envelope.mid} ICID {session.icid} RID {rid} To: <{shown}>")
        return str(replies.RCPT_OK)

    async def handle_RSET(self, server: PvoqSMTP, session: PvoqSession,
                          envelope: PvoqEnvelope) -> str:
        return str(replies.RSET_OK)

    async def handle_DATA(self, server: PvoqSMTP, session: PvoqSession,
                          envelope: PvoqEnvelope) -> str:
        content = envelope.original_content or b""
        log = self.context.maillog
        mid = envelope.mid
        bare = envelope.bare_newline
        if bare if bare is not None else has_bare_newline(content):
            log.info(f"MID {mid} ICID {session.icid} refused: bare CR or LF in DATA")
            log.info(f"Message finished MID {mid} aborted")
            return str(replies.BARE_NEWLINE)
        info = message_info(content)
        if info.message_id:
            log.info(f"MID {mid} Message-ID '{log_safe(info.message_id)}'")
        log.info(f'MID {mid} Subject "{log_safe(info.subject)}"')
        log.info(f"MID {mid} ready {len(content)} bytes from "
                 f"<{log_safe(str(envelope.mail_from))}>")
        try:
            reply = await self._store(server, session, envelope, content, info)
        except Exception as exc:  # the client must retry; nothing was acknowledged
            log.warning(f"MID {mid} application fault: {type(exc).__name__}: {exc}")
            return str(replies.LOCAL_ERROR)
        if reply.startswith("2") and self.context.counters is not None and envelope.counted:
            self.context.counters.inc("messages_received")
            self.context.counters.inc("recipients_received", len(envelope.rcpt_tos))
        return reply

    async def _store(self, server: PvoqSMTP, session: PvoqSession, envelope: PvoqEnvelope,
                     content: bytes, info: MessageInfo) -> str:
        """`accept`, so that a client dropping the connection now cannot leave a
        message half-handled (stored but never queued) until the next restart."""
        mid = envelope.mid
        if envelope.handed_over:  # a task of its own, never cancelled by the session
            return await self.accept(server, session, envelope, content, info)
        if self.commits_whole:
            try:
                return await self.accept(server, session, envelope, content, info)
            except asyncio.CancelledError:
                self.context.maillog.info(
                    f"MID {mid} client left before the reply; the message is kept if its "
                    f"spool commit completes")
                raise
        # The store (files, markers, queueing) runs as its own task, shielded; the
        # client's retry is recognised later.
        task = asyncio.ensure_future(self.accept(server, session, envelope, content, info))
        self._storing.add(task)
        task.add_done_callback(self._storing.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda t: self._after_disconnect(t, mid))
            raise

    async def accept(self, server: PvoqSMTP, session: PvoqSession, envelope: PvoqEnvelope,
                     content: bytes, info: MessageInfo) -> str:
        raise NotImplementedError


async def start_listener(listener: Listener, interface_ip: str,
                         factory: Callable[[], asyncio.Protocol]) -> asyncio.AbstractServer:
    """Bind *listener* on *interface_ip*; *factory* makes each connection's session.

    The factory is called per connection, so it can pick up a reloaded
    configuration (HAT, RAT, TLS context) without rebinding the socket.
    """
    loop = asyncio.get_running_loop()
    return await loop.create_server(factory, host=interface_ip, port=listener.port,
                                    backlog=listener.listen_queue_size, reuse_address=True)
