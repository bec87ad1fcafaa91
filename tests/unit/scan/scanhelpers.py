"""Message builders shared by the scan unit tests."""

from __future__ import annotations

from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from pvoq.scan.clamdproc import ClamdProcess, ClamdUnavailable


def message(subject: str = "Lunch", body: str = "See you at noon.", *,
            headers: dict[str, str] | None = None) -> bytes:
    """A plain-text message with CRLF line ends."""
    lines = ["From: alice@example.org", "To: bob@example.com", f"Subject: {subject}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def with_attachment(payload: bytes, *, filename: str = "file.bin", subject: str = "Report",
                    subtype: str = "octet-stream", text: str = "Please see the attachment."
                    ) -> bytes:
    """A multipart message carrying *payload* as a base64 attachment."""
    msg = MIMEMultipart()
    msg["From"], msg["To"], msg["Subject"] = "alice@example.org", "bob@example.com", subject
    msg.attach(MIMEText(text))
    part = MIMEApplication(payload, subtype, Name=filename)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    msg.attach(part)
    return msg.as_bytes()


def start_clamd(root: Path, **options: object) -> ClamdProcess:
    """A running private clamd; a missing clamd fails the test with the reason (never skips)."""
    proc = ClamdProcess(root, **options)  # type: ignore[arg-type]
    try:
        proc.start()
    except ClamdUnavailable as exc:
        pytest.fail(f"a real clamd is required (Debian package clamav-daemon): {exc}")
    return proc
