"""What the quarantine reads from and does to a message body.

Attachment names and sizes (for search), and the early-release options
(subject tag, X-header, stripped attachments) applied to a copy of the body
before it is spooled for release. Plain functions of bytes; no I/O.
"""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from pvoq.quarantine.settings import EarlyRelease

STRIPPED_NOTE = "The attachment {name} was removed from this message on release.\r\n"


def _parse(body: bytes) -> EmailMessage:
    msg = email.message_from_bytes(body, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def attachments_of(body: bytes) -> list[tuple[str, int]]:
    """(filename, decoded size) of every attachment; a broken message has none."""
    try:
        msg = _parse(body)
        result = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            name = part.get_filename()
            if not name and part.get_content_disposition() != "attachment":
                continue
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            result.append((str(name or "unnamed"), size))
        return result
    except Exception:  # a malformed message must still be quarantined
        return []


def apply_early_release(body: bytes, options: EarlyRelease) -> bytes:
    """The body as released early: subject tagged, header added, attachments stripped."""
    if not options.active:
        return body
    msg = _parse(body)
    if options.subject_tag:
        subject = str(msg.get("Subject", ""))
        del msg["Subject"]
        msg["Subject"] = (f"{options.subject_tag} {subject}".strip()
                          if options.subject_position == "prepend"
                          else f"{subject} {options.subject_tag}".strip())
    if options.x_header and ":" in options.x_header:
        name, _, value = options.x_header.partition(":")
        msg[name.strip()] = value.strip()
    if options.strip_attachments and msg.is_multipart():
        for part in list(msg.walk()):
            if part.is_multipart():
                continue
            filename = part.get_filename()
            if filename or part.get_content_disposition() == "attachment":
                part.set_content(STRIPPED_NOTE.format(name=filename or "unnamed"))
    return msg.as_bytes(policy=email.policy.SMTP)
