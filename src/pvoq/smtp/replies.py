"""SMTP replies pvoq sends, in one place (RFC 5321 codes, RFC 3463 enhanced codes)."""

from __future__ import annotations

ACCESS_DENIED = "554 5.7.1 Access denied"
TOO_MANY_CONNECTIONS = "421 4.3.2 Too many concurrent connections, try again later"
BARE_NEWLINE = "554 5.6.11 Message refused: bare CR or LF in DATA (RFC 5321 2.3.8)"
RCPT_REJECTED = "550 5.1.0 Address rejected"
RCPT_OK = "250 2.1.5 Recipient ok"
SENDER_OK = "250 2.1.0 Sender ok"
LOCAL_ERROR = "451 4.3.0 Local error in processing, try again later"
WRONG_TLS = "554 5.7.1 TLS peer refused"


def accepted(mid: int) -> str:
    return f"250 2.0.0 Ok: Message {mid} accepted"
