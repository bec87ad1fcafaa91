"""SMTP replies pvoq sends, in one place (RFC 5321 codes, RFC 3463 enhanced codes).

Every reply is a `StatusCode(code, text)`, in the shape of aiosmtpd's
`testing/statuscodes.py`: `str()` of one is its wire line
(`"554 5.7.1 Access denied"`). A reply with a variable part has `{fields}`
in its text and is sent as `REPLY.format(field=...)`, which returns the
line. Tests compare what a server answered against these values, so a
reply's wording is changed here and nowhere else.

The CPQ listener's own replies (`XCPQ`, readiness, transfers) are in
`pvoq.cpq.replies`.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class StatusCode(NamedTuple):
    """One SMTP reply: a three-digit code and its text (enhanced code first, if any)."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"

    def format(self, *args: Any, **fields: Any) -> str:
        """The wire line with the text's `{fields}` filled in."""
        return f"{self.code} {self.text.format(*args, **fields)}"

    def more(self) -> str:
        """The line as a non-final line of a multi-line reply (`250-PIPELINING`)."""
        return f"{self.code}-{self.text}"


# -- connection: the HAT and the mail-flow policy --------------------------------------
ACCESS_DENIED = StatusCode(554, "5.7.1 Access denied")
# A HAT REJECT names the appliance that refused.
HAT_REJECT = StatusCode(554, "5.7.1 Access denied ({hostname})")
# More sessions than the listener's max_connections.
TOO_MANY_CONNECTIONS = StatusCode(421, "4.3.2 Too many concurrent connections, try again later")
# The mail-flow policy's limits (RFC 5321 4.5.3.1.10 for the recipient limit).
TOO_MANY_FROM_HOST = StatusCode(
    421, "4.7.0 Too many concurrent connections from your host, try again later")
TOO_MANY_FOR_POLICY = StatusCode(421, "4.7.0 Too many concurrent connections, try again later")
TOO_MANY_RECIPIENTS = StatusCode(452, "4.5.3 Too many recipients")
# TLS required by the HAT but no certificate to offer it with: the fault is
# ours, so a temporary reply (the sender keeps the mail), not a bounce.
TLS_UNAVAILABLE = StatusCode(454, "4.7.0 TLS required but not available, try again later")
WRONG_TLS = StatusCode(554, "5.7.1 TLS peer refused")

# -- session limits (docs/architecture.md, "Limits"): each closes the connection ----------
# Postfix's words for its junk and timeout limits, and for its refusal of commands
# pipelined where RFC 2920 forbids it (smtpd_forbid_unauth_pipelining).
TOO_MANY_JUNK_COMMANDS = StatusCode(421, "4.7.0 Error: too many junk commands, closing connection")
SESSION_TOO_LONG = StatusCode(
    421, "4.4.2 Error: maximum session time exceeded, closing connection")
STARTTLS_TOO_LATE = StatusCode(
    421, "4.7.0 Error: STARTTLS not completed in time, closing connection")
PIPELINING_AFTER_DATA = StatusCode(554, "5.5.0 Error: SMTP protocol synchronization")

# -- EHLO keywords ---------------------------------------------------------------------
PIPELINING = StatusCode(250, "PIPELINING")   # RFC 2920
AUTH = StatusCode(250, "AUTH")               # aiosmtpd's, never offered
CHUNKING = StatusCode(250, "CHUNKING")       # RFC 3030: BDAT (`smtp.chunking`)

# -- the transaction -------------------------------------------------------------------
SENDER_OK = StatusCode(250, "2.1.0 Sender ok")
RCPT_OK = StatusCode(250, "2.1.5 Recipient ok")
RCPT_REJECTED = StatusCode(550, "5.1.0 Address rejected")
RSET_OK = StatusCode(250, "2.0.0 Ok")
# DATA as aiosmtpd words it (the message is read by `smtp.data`).
NEED_RCPT = StatusCode(503, "Error: need RCPT command")
DATA_SYNTAX = StatusCode(501, "Syntax: DATA")
START_DATA = StatusCode(354, "End data with <CR><LF>.<CR><LF>")
LINE_TOO_LONG = StatusCode(500, "Line too long (see RFC5321 4.5.3.1.6)")
TOO_MUCH_DATA = StatusCode(552, "Error: Too much mail data")
DATA_OK = StatusCode(250, "OK")  # a handler without a DATA hook
BARE_NEWLINE = StatusCode(554, "5.6.11 Message refused: bare CR or LF in DATA (RFC 5321 2.3.8)")
ACCEPTED = StatusCode(250, "2.0.0 Ok: Message {mid} accepted")
# BDAT (RFC 3030, `smtp.chunking`).
BDAT_SYNTAX = StatusCode(501, "5.5.4 Syntax: BDAT <size> [LAST]")
CHUNK_OK = StatusCode(250, "2.0.0 {size} octets received")
NEED_MAIL = StatusCode(503, "5.5.1 Error: need MAIL command")
CHUNK_AFTER_FAILURE = StatusCode(
    503, "5.5.1 Error: a chunk of this transaction was refused; chunk thrown away")
DATA_AFTER_BDAT = StatusCode(503, "5.5.1 Error: DATA in a transaction that sent BDAT")
LOCAL_ERROR = StatusCode(451, "4.3.0 Local error in processing, try again later")

# -- the sink (`pvoq sink`): a next hop that refuses and defers on request ---------------
SINK_USER_UNKNOWN = StatusCode(
    550, "5.1.1 <{address}>: Recipient address rejected: User unknown")
SINK_MAILBOX_BUSY = StatusCode(450, "4.2.1 <{address}>: Mailbox busy, try again later")
SINK_RCPT_OK = StatusCode(250, "2.1.5 Ok")
SINK_STORED = StatusCode(250, "2.0.0 Ok: stored as {n}")


def accepted(mid: int) -> str:
    """`250` for a message made durable under *mid*."""
    return ACCEPTED.format(mid=mid)
