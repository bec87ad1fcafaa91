"""Delivery status notifications (RFC 3464) for hard bounces and expired mail.

Builds the bytes of a `multipart/report; report-type=delivery-status`
message addressed to the envelope sender, with the original headers
attached. Pure: no I/O; the caller spools and delivers it (with the null
sender `<>`, so a DSN never bounces back).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

_ENHANCED = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def build_dsn(*, reporting_host: str, sender: str, original_mid: int, received: float,
              failures: list[tuple[str, str, str]], original: bytes,
              now: float | None = None) -> bytes:
    """A DSN for *failures* = [(recipient, status like "5.1.1", diagnostic text)]."""
    when = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    arrival = datetime.fromtimestamp(received, UTC)
    boundary = f"pvoq-dsn-{original_mid}-{int(when.timestamp())}"
    text = [f"This is the mail system at {reporting_host}.", "",
            "Your message could not be delivered to the following recipients:", ""]
    text += [f"  <{rcpt}>: {diag}" for rcpt, _, diag in failures]
    status = [f"Reporting-MTA: dns; {reporting_host}", f"X-Pvoq-MID: {original_mid}",
              f"Arrival-Date: {format_datetime(arrival)}"]
    for rcpt, code, diag in failures:
        status += ["", f"Final-Recipient: rfc822; {rcpt}", "Action: failed",
                   f"Status: {code}", f"Diagnostic-Code: smtp; {diag}"]
    head = original.partition(b"\r\n\r\n")[0].decode("utf-8", "replace").splitlines()
    lines = [
        f"From: Mail Delivery Subsystem <MAILER-DAEMON@{reporting_host}>",
        f"To: <{sender}>",
        "Subject: Delivery Status Notification (Failure)",
        f"Date: {format_datetime(when)}",
        f"Message-ID: {make_msgid(domain=reporting_host)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated delivery status notification.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "",
        *text,
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        *status,
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
        *head,
        "",
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


def status_of(reply_text: str, default: str = "5.0.0") -> str:
    """The first enhanced status code (RFC 3463, like 5.1.1) in an SMTP reply, if any."""
    found = _ENHANCED.search(reply_text)
    return found.group(1) if found else default
