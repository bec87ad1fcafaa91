"""The limits of one SMTP session: what a single client may hold of a listener.

Owns, for every listener's sessions (`LimitedSMTP`, the base of
`smtp.server.PvoqSMTP`):

- junk commands: NOOP, RSET, VRFY, EXPN, ETRN, HELP, and every command
  answered 500-504 or 530, counted against the listener's
  `max_junk_commands`; the count starts again after each accepted message
  (Postfix's `smtpd_junk_command_limit`). Over it: 421 and close;
- the session's lifetime (`max_session_seconds`), from connect, whatever the
  session does: the idle timeout stays aiosmtpd's, per command read, so
  NOOPs keep a session from idling but not from ending;
- on a CPQ listener, the time from connect to a completed STARTTLS
  (`starttls_deadline_seconds`);
- replies to pipelined commands (RFC 2920): the reply to a MAIL, RCPT, RSET or
  `XCPQ` is held while the client's next command line is already read in, and
  leaves with the next reply that is not held (when the input runs dry, at
  DATA's 354 at the latest), so a pipelined group is answered in one write, as
  Postfix does; every direct write here (a limit's 421) sends what is held
  first, in order;
- commands pipelined straight after the end of DATA, where the listener
  refuses them (`Listener.refuses_pipelining_after_data`): the message keeps
  its reply, then 554 and close (Postfix's `smtpd_forbid_unauth_pipelining`);
- what one message may carry whatever the HAT says: addresses of at most
  `MAX_ADDRESS_OCTETS` (RFC 5321 4.5.3.1.3: a path is 256 octets with its
  `<>`; longer, or with a control character, is a syntax error: 501,
  `address_fault`) and at most `MAX_RECIPIENTS`
  recipients (more: 452, the client sends the rest in another transaction).
  CPQ metadata has the same bounds (`cpq.transfer`), so that what a gateway
  accepts it can ship, and what the manager stores it can release.

A timed limit reached while a command is under way (a message being
received or stored) waits for that command's reply: nothing acknowledged is
cut short. Each cut is logged `ICID <icid> Receiving Failed: <reason>` by the
session's `log_cut`.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP

from pvoq.config.model import Listener
from pvoq.smtp import replies
from pvoq.smtp.replies import StatusCode
from pvoq.smtp.setup import BoundCommands, auth_methods, setup_session

MAX_ADDRESS_OCTETS = 254   # an address (a path without its <>), RFC 5321 4.5.3.1.3
MAX_RECIPIENTS = 1000      # recipients of one message (AsyncOS's default per message)


def address_fault(address: str) -> str | None:
    """Why *address* (a path without its <>) cannot be taken, or None.

    At most MAX_ADDRESS_OCTETS of UTF-8, and printable: RFC 5321's quoted
    strings allow no control characters (4.1.2), so none can reach a log, a
    database or a later MAIL command through an address.
    """
    if len(address) > MAX_ADDRESS_OCTETS // 4 and len(
            address.encode("utf-8", "surrogatepass")) > MAX_ADDRESS_OCTETS:
        return f"is longer than {MAX_ADDRESS_OCTETS} octets"
    if not address.isprintable():
        return "is not an address"
    return None

# Commands that move no mail (Postfix's junk commands, and HELP); unknown and
# erroneous commands (a 500-504 reply, or 530 before a required STARTTLS) count too.
JUNK_COMMANDS = frozenset({"NOOP", "RSET", "VRFY", "EXPN", "ETRN", "HELP"})
JUNK_REPLIES = frozenset({b"500", b"501", b"502", b"503", b"504", b"530"})
PIPELINED_SHOWN = 100  # bytes of what was pipelined after DATA, in the log line
# Commands whose reply may wait for the next one (RFC 2920 3.1: those that may stand
# anywhere in a group; `XCPQ` is CPQ's metadata, sent in the group before DATA).
HELD_COMMANDS = frozenset({"MAIL", "RCPT", "RSET", "XCPQ"})
MAX_HELD = 100  # replies held at most: the next one goes out with them

# Each session class's `smtp_*` methods under the limits, wrapped once per class: wrapping
# them for every session (functools.wraps, fifteen times) cost 4 % of a busy listener.
_LIMITED: dict[type, dict[str, Callable[[Any, str], Any]]] = {}


class LimitedSMTP(SMTP):
    """aiosmtpd's session under the listener's limits; `listener` is set before
    `__init__` runs, and the subclass logs each cut (`log_cut`)."""

    listener: Listener

    def __init__(self, handler: Any, *, hostname: str, ident: str,
                 data_size_limit: int | None, timeout: float,
                 tls_context: ssl.SSLContext | None = None,
                 require_starttls: bool = False) -> None:
        self._junk = 0                  # junk commands since connect or the last message
        self._busy = False              # a command is being answered (DATA stored, ...)
        self._ending: tuple[StatusCode, str] | None = None  # a limit reached while busy
        self._limit_timers: list[asyncio.TimerHandle] = []
        self._idle_deadline = 0.0       # when the idle timeout ends (`_reset_timeout`)
        self._may_hold = False          # the command under way is one of HELD_COMMANDS
        self._held: list[bytes] = []    # replies held for the next write (`hold_reply`)
        # aiosmtpd's `SMTP.__init__`, its lookups made once per listener (`smtp.setup`).
        setup_session(self, handler, hostname=hostname, ident=ident,
                      data_size_limit=data_size_limit, timeout=timeout,
                      tls_context=tls_context, require_starttls=require_starttls)
        # Every command goes through `_limited`. (aiosmtpd answers unknown commands
        # itself, counted here by their reply, and closes after five.)
        cls = type(self)
        table = _LIMITED.get(cls)
        if table is None:
            table = _LIMITED[cls] = {name[len("smtp_"):]: _limited(name[len("smtp_"):],
                                                                   getattr(cls, name))
                                     for name in dir(cls) if name.startswith("smtp_")}
        self._smtp_methods = BoundCommands(table, self)  # type: ignore[assignment]

    @functools.cached_property
    def _auth_methods(self) -> dict[str, Any]:  # type: ignore[override]
        return auth_methods(self)

    def log_cut(self, reason: str) -> None:
        raise NotImplementedError

    # -- replies to pipelined commands --------------------------------------------------
    def hold_reply(self, line: bytes) -> bool:
        """Keep *line* (a whole reply, no CRLF) for the next write if the command under
        way may be answered late and the client's next command is already here."""
        held = self._held
        if self._may_hold and len(held) < MAX_HELD and \
                b"\n" in self._reader._buffer:  # type: ignore[attr-defined]
            held.append(line)
            return True
        return False

    def with_held(self, line: bytes) -> bytes:
        """*line* (a whole reply, no CRLF) after the replies held so far, which it takes."""
        held = self._held
        if not held:
            return line
        held.append(line)
        line = b"\r\n".join(held)
        held.clear()
        return line

    async def _push_now(self, reply: StatusCode) -> None:
        """*reply* written at once, after whatever is held (aiosmtpd's push)."""
        await SMTP.push(self, self.with_held(str(reply).encode("ascii")))

    # -- what the session calls ----------------------------------------------------------
    def start_limit_timers(self) -> None:
        """At connect: the session's lifetime, and a CPQ listener's STARTTLS deadline."""
        listener = self.listener
        self._limit_timers.append(self.loop.call_later(
            listener.max_session_seconds, self._limit_reached, replies.SESSION_TOO_LONG,
            f"session older than max_session_seconds {listener.max_session_seconds:g}"))
        if listener.is_cpq:
            self._limit_timers.append(self.loop.call_later(
                listener.starttls_deadline_seconds, self._starttls_deadline))

    def cancel_limit_timers(self) -> None:
        for timer in self._limit_timers:
            timer.cancel()
        self._limit_timers.clear()

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd's idle timeout, restarted at every command: instead of a new timer
        each time (a cancel and a `call_later` per command), the deadline moves and the
        one timer, when it fires early, waits again until the deadline."""
        loop = self.loop
        deadline = loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._timeout_handle = loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        if self.loop.time() < self._idle_deadline:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_check)
            return
        self._timeout_cb()

    async def replied(self, line: bytes) -> None:
        """After each reply: an unknown or erroneous command counts as junk."""
        if line[:3] in JUNK_REPLIES and self._count_junk() and self.transport is not None:
            await self._end(replies.TOO_MANY_JUNK_COMMANDS, self._junk_reason())

    def message_accepted(self) -> None:
        self._junk = 0  # Postfix: the junk count starts again after a message

    def pipelined_after_data(self) -> bytes:
        """What the client sent after the end of the data, before its reply (the first
        bytes), if this listener refuses that; else nothing."""
        if not self.listener.refuses_pipelining_after_data:
            return b""
        return bytes(self._reader._buffer[:PIPELINED_SHOWN])  # type: ignore[attr-defined]

    async def refuse_pipelined(self) -> None:
        """Once the message has its reply: the early commands refused, the connection closed."""
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        await self._push_now(replies.PIPELINING_AFTER_DATA)
        if self.transport is not None:
            self.transport.close()

    # -- the limits ----------------------------------------------------------------------
    def _count_junk(self) -> bool:
        """One more junk command; True once over the listener's `max_junk_commands`."""
        self._junk += 1
        return self._junk > self.listener.max_junk_commands

    def _junk_reason(self) -> str:
        return (f"too many junk commands ({self._junk}; max_junk_commands "
                f"{self.listener.max_junk_commands})")

    async def _end(self, reply: StatusCode, reason: str) -> None:
        """Answer *reply* (a 421) and close: a limit was reached between commands."""
        self._ending = None
        self.log_cut(reason)
        if self.transport is None or self.transport.is_closing():
            return
        await self._push_now(reply)
        if self.transport is not None:
            self.transport.close()

    def _limit_reached(self, reply: StatusCode, reason: str) -> None:
        """A timed limit: said and closed now if the session waits for a command, else
        once the command under way is answered (a message being stored finishes)."""
        if self.transport is None or self.transport.is_closing():
            return
        if self._busy:
            self._ending = (reply, reason)
            return
        self.log_cut(reason)
        self._writer.write(self.with_held(str(reply).encode("ascii")) + b"\r\n")
        self.transport.close()

    def _starttls_deadline(self) -> None:
        """A CPQ listener's client has until now to complete STARTTLS."""
        if self.transport is None or self.transport.is_closing():
            return
        if self._original_transport is not None and \
                getattr(self.session, "ssl", None) is not None and self._tls_handshake_okay:
            return  # TLS is up (and its certificate accepted)
        reason = (f"STARTTLS not completed within starttls_deadline_seconds "
                  f"{self.listener.starttls_deadline_seconds:g}")
        if self._original_transport is not None:
            self.log_cut(reason)  # in the middle of the handshake: nothing can be said
            self.transport.close()
            return
        self._limit_reached(replies.STARTTLS_TOO_LATE, reason)


def _limited(command: str, method: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    """*method* (aiosmtpd's `smtp_<command>`, unbound) under the session limits."""
    junk = command in JUNK_COMMANDS
    holds = command in HELD_COMMANDS

    @functools.wraps(method)  # keeps aiosmtpd's syntax marks (EHLO, HELP)
    async def run(self: LimitedSMTP, arg: str) -> None:
        if junk and self._count_junk():
            await self._end(replies.TOO_MANY_JUNK_COMMANDS, self._junk_reason())
            return
        self._busy = True
        self._may_hold = holds
        try:
            await method(self, arg)
        finally:
            self._busy = False
            self._may_hold = False
        if self._ending is not None and self.transport is not None:
            await self._end(*self._ending)
    return run
