"""What the SMTP layer reads in a received message: the bare CR/LF check and a few headers.

`has_bare_newline` refuses SMTP smuggling (RFC 5321 2.3.8: CR and LF only
as CRLF). `message_info` reads the headers a handler and the log lines need
(Subject, Message-ID) once per message, as the email package's compat32
parser reads them (`smtp.headers.header_text`): a plain header block (CRLF
lines, each a `name:` line or a continuation, no `From ` line, valid UTF-8
values) is read directly from the bytes, which gives the same text for a
tenth of the cost; anything else goes through the parser itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32

from pvoq.smtp.headers import header_text


def has_bare_newline(content: bytes) -> bool:
    """RFC 5321 2.3.8: CR and LF only as CRLF.

    A bare one is how SMTP smuggling hides a second message inside the first;
    the message is refused outright. Counting (C speed) beats a regex here.
    """
    pairs = content.count(b"\r\n")
    return content.count(b"\r") != pairs or content.count(b"\n") != pairs


def line_facts(piece: bytes | bytearray) -> tuple[int, bool]:
    """`(longest, bare)` of *piece*, whole lines joined by CRLF: the octets of its
    longest line without the CRLF, and whether it holds a CR or LF outside a CRLF
    (`has_bare_newline`, answered from the same split)."""
    lines = piece.split(b"\r\n")
    # What is left once the CRLFs are cut out; `in` (memchr) is faster than a count.
    rest = b"".join(lines)
    return max(map(len, lines)), b"\r" in rest or b"\n" in rest


@dataclass
class MessageInfo:
    """Headers a handler and the log lines need, parsed once."""

    subject: str = ""
    message_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)


# The start of a header line as the email package's parser takes it (its `headerRE`,
# with a name of one character at least).
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
_WANTED = (b"subject", b"message-id")


def _plain_headers(head: bytes) -> dict[bytes, str] | None:
    """The first Subject and Message-ID of *head* (a header block, CRLF-terminated lines),
    as compat32 reads them; None when the block is not plain (the parser decides then)."""
    if not head.endswith(b"\r\n") or has_bare_newline(head):
        return None
    found: dict[bytes, str] = {}
    name = b""
    parts: list[bytes] | None = None  # the lines of a wanted header's value
    for line in head[:-2].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not name:
                return None  # a continuation first: the parser notes a defect
            if parts is not None:
                parts.append(line)
            continue
        start = _FIELD.match(line)
        if start is None or line.startswith(b"From "):
            return None  # the end of the headers, or an envelope line: the parser's call
        if parts is not None and name not in found:
            try:
                found[name] = b"\r\n".join(parts).decode("utf-8")
            except UnicodeDecodeError:
                return None
        name = line[:start.end() - 1].lower()
        parts = [line[start.end():].lstrip(b" \t")] \
            if name in _WANTED and name not in found else None
    if parts is not None and name not in found:
        try:
            found[name] = b"\r\n".join(parts).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return found


def message_info(content: bytes) -> MessageInfo:
    # Only the header block: the parser would otherwise walk every body line.
    end = content.find(b"\r\n\r\n")
    head = content if end < 0 else content[:end + 2]
    plain = _plain_headers(head)
    if plain is not None:
        return MessageInfo(subject=plain.get(b"subject", ""),
                           message_id=plain.get(b"message-id", "").strip())
    parsed = BytesHeaderParser(policy=compat32).parsebytes(head)
    return MessageInfo(subject=header_text(parsed, "Subject"),
                       message_id=header_text(parsed, "Message-ID").strip())
