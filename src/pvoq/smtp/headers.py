"""Header values of received mail as text, and mail-borne text made safe for a log line.

`header_text` reads one header from a parsed header block the way a person
reads it on the wire: a raw 8-bit value (RFC 6532 lets a client send UTF-8
headers without encoded-words) is decoded as UTF-8 when it is valid UTF-8;
otherwise the email package's reading is kept (undecodable octets become
U+FFFD). Encoded-words (RFC 2047) are left as sent, as before.

`log_safe` escapes what a peer could use to forge or garble a mail_logs line:
control characters (C0 but tab, DEL, C1) and the Unicode line and paragraph
separators become `\\xNN` / `\\uNNNN`. CR and LF are left to the log writer,
which escapes them as `\\r` and `\\n`.
"""

from __future__ import annotations

import re
from email.message import Message

_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")


def header_text(head: Message, name: str) -> str:
    """The first *name* header of *head* (parsed from bytes), as text; "" when absent."""
    for key, value in head.raw_items():
        if key.lower() != name.lower():
            continue
        if isinstance(value, str):
            try:
                return value.encode("ascii", "surrogateescape").decode("utf-8")
            except UnicodeError:
                pass  # not valid UTF-8 (or not from bytes): the email package's reading
        return str(head.get(name, "") or "")
    return ""


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def log_safe(text: str) -> str:
    """*text* with control characters and line separators escaped (CR and LF excepted)."""
    return _UNSAFE.sub(_escape, text)
