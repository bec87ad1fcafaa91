"""What the quarantine reads from and does to a message body.

Attachment names and sizes (for search), and the early-release options
(subject tag, X-header, stripped attachments) applied to a copy of the body
before it is spooled for release. Plain functions of bytes; no I/O.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
from email.header import Header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser

from pvoq.quarantine.settings import EarlyRelease
from pvoq.scan.mimewalk import NotWalkable, leaves

STRIPPED_NOTE = "The attachment {name} was removed from this message on release.\r\n"
CONTENT_REMOVED_NOTE = (b"This message could not be read as MIME; its content was removed "
                        b"on release.\r\n")


def _parse(body: bytes) -> EmailMessage:
    msg = email.message_from_bytes(body, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


WALK_ABOVE = 1024 * 1024  # a larger body is walked part by part (`scan.mimewalk`)


def attachments_of(body: bytes) -> list[tuple[str, int]]:
    """(filename, decoded size) of every attachment; a broken message has none.

    A message of one part (neither multipart nor message/*) that is no
    attachment itself has none: its header block alone says so, and nothing
    more is parsed. A body over `WALK_ABOVE` is walked part by part, one part
    decoded at a time, instead of parsed whole (unless the walk does not follow it)."""
    try:
        block = _head_block(body)
        if _plainly_no_attachment(block):
            return []
        head = BytesHeaderParser(policy=email.policy.default).parsebytes(block)
        if head.get_content_maintype() not in ("multipart", "message") and \
                _attachment_name(head) is None:
            return []
        if len(body) > WALK_ABOVE:
            with contextlib.suppress(NotWalkable):
                return [(name, len(leaf.decode(body)))
                        for leaf in leaves(body, policy=email.policy.default)
                        if (name := _attachment_name(leaf.part)) is not None]
        return _parsed_attachments(body)
    except Exception:  # a malformed message must still be quarantined
        return []


def _head_block(body: bytes) -> bytes:
    """The header block of *body*, as the whole parse would take it (the body not read)."""
    # The first blank line, CRLF or LF; an LF one is looked for only before the CRLF one
    # (a CRLF message has none at all: it would be searched for to its end).
    crlf = body.find(b"\n\r\n")
    lf = body.find(b"\n\n", 0, crlf + 2 if crlf >= 0 else len(body))
    ends = [i for i in (lf, crlf) if i >= 0]
    return body[:min(ends) + 1] if ends else body


# A Content-Type of one line that the parser reads as text with at most a charset.
_PLAIN_TEXT_TYPE = re.compile(rb"[ \t]*text/[a-z0-9.+-]+[ \t]*(?:;[ \t]*charset[ \t]*=[ \t]*"
                              rb'(?:"[a-z0-9_.:+-]*"|[a-z0-9_.:+-]+)[ \t]*)?;?[ \t]*\r?',
                              re.IGNORECASE)


def _plainly_no_attachment(block: bytes) -> bool:
    """Whether header block *block* plainly makes a one-part message that is no
    attachment: it names no disposition, and either no content type or one
    Content-Type line of text with at most a charset. Most held mail is; the
    header parser then has nothing to add. Anything else (a second mention, a
    folded value, another parameter) is left to the parser: True only when it
    would agree."""
    low = block.lower()
    if b"content-disposition" in low:
        return False
    at = low.find(b"content-type")
    if at < 0:
        return True  # text/plain by default, and no name anywhere
    if low.find(b"content-type", at + 1) >= 0 or (at and low[at - 1] != 0x0A) or \
            low[at + 12:at + 13] != b":":
        return False
    end = low.find(b"\n", at)
    if end < 0 or low[end + 1:end + 2] in (b" ", b"\t"):  # the last line, or folded
        return False
    return _PLAIN_TEXT_TYPE.fullmatch(block, at + 13, end) is not None


def _parsed_attachments(body: bytes) -> list[tuple[str, int]]:
    """`attachments_of` by the whole parse (the reference the shortcuts must agree with)."""
    result = []
    for part in _parse(body).walk():
        if part.is_multipart():
            continue
        name = _attachment_name(part)
        if name is None:
            continue
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        result.append((name, size))
    return result


def _attachment_name(part: Message) -> str | None:
    """The name *part* is listed under as an attachment, or None if it is none."""
    name = part.get_filename()
    if not name and part.get_content_disposition() != "attachment":
        return None
    return str(name or "unnamed")


def apply_early_release(body: bytes, options: EarlyRelease) -> bytes:
    """The body as released early: attachments stripped, subject tagged, header added.

    Never raises: a release must not stall on a message the email package
    cannot read or write back. The subject tag and the X-header are written
    into the raw header section, so the rest of the message stays byte for byte
    what was held; stripping rewrites the MIME tree, and a message whose tree
    cannot be rewritten loses its whole content to a notice instead (the option
    exists to keep attachments from being released).
    """
    if not options.active:
        return body
    if options.strip_attachments:
        body = _strip_attachments(body)
    lines = body.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if line in (b"\r\n", b"\n")), len(lines))
    eol = b"\n" if lines and lines[0].endswith(b"\n") and not lines[0].endswith(b"\r\n") \
        else b"\r\n"
    head = lines[:end]
    if options.subject_tag:
        head = _tag_subject(head, _header_text(options.subject_tag), eol,
                            append=options.subject_position != "prepend")
    if options.x_header and ":" in options.x_header:
        name, _, value = options.x_header.partition(":")
        token = "".join(c for c in name.strip() if 33 <= ord(c) <= 126 and c != ":")
        if token:
            head.append(token.encode("ascii") + b": " + _header_text(value.strip()) + eol)
    return b"".join(head + lines[end:])


def _header_text(text: str) -> bytes:
    """*text* as a header value: control characters dropped, an encoded-word if not ASCII."""
    clean = "".join(c for c in text if c >= " " and c != "\x7f")
    if clean.isascii():
        return clean.encode("ascii")
    return Header(clean, "utf-8").encode().encode("ascii")


def _tag_subject(head: list[bytes], tag: bytes, eol: bytes, *, append: bool) -> list[bytes]:
    """The raw header lines *head* with *tag* put before or after the Subject's value."""
    head = list(head)
    for i, line in enumerate(head):
        if line[:8].lower() != b"subject:":
            continue
        last = i
        while last + 1 < len(head) and head[last + 1][:1] in (b" ", b"\t"):
            last += 1  # folded onto the lines below
        if append:
            text = head[last].rstrip(b"\r\n")
            head[last] = text + (b"" if text[-1:] in (b" ", b"\t") else b" ") + tag + eol
        else:
            value = head[i][8:].lstrip(b" \t")
            head[i] = b"Subject: " + tag + (b" " + value if value.strip() else eol)
        return head
    head.append(b"Subject: " + tag + eol)
    return head


def _strip_attachments(body: bytes) -> bytes:
    try:
        msg = _parse(body)
        if not msg.is_multipart():
            return body
        stripped = False
        for part in list(msg.walk()):
            if part.is_multipart():
                continue
            filename = part.get_filename()
            if filename or part.get_content_disposition() == "attachment":
                part.set_content(STRIPPED_NOTE.format(name=filename or "unnamed"))
                stripped = True
        return msg.as_bytes(policy=email.policy.SMTP) if stripped else body
    except Exception:  # unreadable MIME: release its headers and a notice, never its parts
        return _content_removed(body)


def _content_removed(body: bytes) -> bytes:
    lines = body.splitlines(keepends=True)
    end = next((i for i, line in enumerate(lines) if line in (b"\r\n", b"\n")), len(lines))
    kept: list[bytes] = []
    dropping = False
    for line in lines[:end]:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        dropping = name in (b"content-type", b"content-transfer-encoding", b"mime-version")
        if not dropping:
            kept.append(line)
    return b"".join(kept) + (b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
                             b"Content-Transfer-Encoding: 7bit\r\n\r\n" + CONTENT_REMOVED_NOTE)
