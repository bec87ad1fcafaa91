"""A message as the checks see it: envelope plus a lazily parsed MIME view.

Owns decoding (RFC 2047 headers, base64 and quoted-printable parts), the
list of attachments (name, MIME type, size, SHA-256) and the URLs found in
the text. Every view is computed once, on first use, so a check that only
looks at the envelope costs nothing. This module never decides anything and
never does I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from functools import cached_property

_URL = re.compile(rb"https?://(?:[^\s/?#@\"'<>]*@)?([A-Za-z0-9.\-]+)(?::\d+)?(/[^\s\"'<>]*)?",
                  re.IGNORECASE)


def decoded_header(value: object) -> str:
    """A header as a person reads it: RFC 2047 encoded-words decoded."""
    raw = str(value)
    try:
        return str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeError):
        return raw


@dataclass(frozen=True)
class Envelope:
    """What the SMTP session knew: sender, recipients, peer and its sender group."""

    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    remote_ip: str = ""
    sender_group: str = ""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    payload: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.payload)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    @property
    def extension(self) -> str:
        name = self.filename.lower()
        return name.rpartition(".")[2] if "." in name else ""


def _is_attachment(part: Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).lower()
    return bool(part.get_filename()) or disposition.startswith("attachment")


class ScanMessage:
    """One message's bytes and envelope, with the views the checks need."""

    def __init__(self, body: bytes, envelope: Envelope | None = None) -> None:
        self.body = body
        self.envelope = envelope or Envelope()

    @property
    def size(self) -> int:
        return len(self.body)

    @cached_property
    def message(self) -> Message:
        return message_from_bytes(self.body, policy=compat32)

    def headers(self, name: str) -> list[str]:
        """Every value of header *name*, decoded."""
        return [decoded_header(v) for v in (self.message.get_all(name, []) or [])]

    @cached_property
    def subject(self) -> str:
        values = self.headers("Subject")
        return values[0] if values else ""

    @cached_property
    def _leaves(self) -> list[tuple[Message, bytes]]:
        result = []
        for part in self.message.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                result.append((part, payload))
        return result

    @cached_property
    def attachments(self) -> list[Attachment]:
        return [Attachment(decoded_header(part.get_filename() or ""),
                           part.get_content_type().lower(), payload)
                for part, payload in self._leaves if _is_attachment(part)]

    @cached_property
    def body_texts(self) -> list[str]:
        """The decoded text of the parts that are not attachments."""
        texts = []
        for part, payload in self._leaves:
            if _is_attachment(part) or part.get_content_maintype() != "text":
                continue
            charset = part.get_content_charset() or "utf-8"
            try:
                texts.append(payload.decode(charset, "replace"))
            except LookupError:
                texts.append(payload.decode("utf-8", "replace"))
        return texts

    @cached_property
    def urls(self) -> list[tuple[str, str]]:
        """(host, path) of every http(s) URL in the raw message and its decoded parts."""
        seen: list[tuple[str, str]] = []
        for payload in [self.body, *(p for _, p in self._leaves)]:
            for m in _URL.finditer(payload):
                host = m.group(1).decode("ascii", "replace").lower().rstrip(".")
                path = (m.group(2) or b"/").decode("ascii", "replace")
                if (host, path) not in seen:
                    seen.append((host, path))
        return seen
