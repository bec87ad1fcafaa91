"""The trace header a public or private SMTP listener prepends to the mail it accepts.

RFC 5321 4.4 requires an SMTP server that accepts a message for relaying to
add a `Received:` line at the top of its header section; `received_header`
builds it, in the RFC 5322 3.6.7 form Postfix writes:

    Received: from <HELO name> (<verified reverse DNS name or unknown> [<client IP>])
            (using <TLS protocol> with cipher <cipher> (<bits> bits))
            by <our hostname> with SMTP|ESMTP|ESMTPS id <MID>
            for <recipient>; <RFC 5322 date>

- `with` is `SMTP` after HELO, `ESMTP` after EHLO, `ESMTPS` once STARTTLS
  was completed (RFC 3848); the TLS comment is only there then.
- `for <recipient>` only when the message has exactly one recipient (more
  would disclose the other recipients to each of them).
- The client IP is an address literal (RFC 5321 4.1.3): `[192.0.2.1]`, an
  IPv6 one `[IPv6:2001:db8::1]`, an IPv4-mapped IPv6 one as IPv4.

The HELO name and the reverse DNS name come from the peer and are hostile:
control characters (CR and LF among them) are removed, anything else that a
host name or an address literal cannot hold (space, parentheses, quotes,
non-ASCII, ...) becomes `?`, and each is cut to `MAX_NAME` characters. A
recipient that is not printable ASCII (or holds `<` or `>`) is left out. The header
is folded between its clauses (`from ...`, the comments, `by ...`, `with ...`,
`id ...`, `for ...`, the date) so that no line exceeds `FOLD_AT` columns
unless one clause alone is longer (a long HELO name: at most `MAX_NAME` and
a few characters, well under RFC 5322's 998). The result is ASCII with CRLF
line ends, at most `MAX_HEADER` octets.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

MAX_NAME = 255      # characters of a HELO or DNS name shown (RFC 1035: names are shorter)
MAX_ADDRESS = 256   # characters of a recipient shown in `for <...>` (RFC 5321: 254 octets)
FOLD_AT = 78        # RFC 5322 2.1.1: lines SHOULD be at most 78 characters
MAX_HEADER = 2048   # octets the header can take, whatever the peer sent (bounds the above)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NOT_NAME = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")
# Printable ASCII, single spaces (a quoted local part) but no angle bracket, which would
# end the `for <...>` path early.
_PRINTABLE_ADDRESS = re.compile(r"[\x21-\x3b=\x3f-\x7e]+(?: [\x21-\x3b=\x3f-\x7e]+)*\Z")


@dataclass(frozen=True)
class TlsInfo:
    """What a completed STARTTLS negotiated."""

    protocol: str            # `TLSv1.3`
    cipher: str              # `TLS_AES_256_GCM_SHA384`
    bits: int | None = None  # the cipher's secret bits


# A listener sees the same few peers, HELO names and TLS parameters again and again: each
# is cleaned (or its address literal made) once, not for every message.
_SEEN = 1024  # entries: a HELO name is at most a command line (512 octets)


@functools.lru_cache(maxsize=_SEEN)
def clean_name(text: str | None, *, limit: int = MAX_NAME) -> str:
    """A peer-supplied name made safe for a header: controls removed, anything a host
    name or address literal cannot hold turned into `?`, cut to *limit*; `unknown`
    when nothing is left."""
    if not text:
        return "unknown"
    shown = _NOT_NAME.sub("?", _CONTROL.sub("", text))[:limit]
    return shown or "unknown"


@functools.lru_cache(maxsize=_SEEN)
def address_literal(ip: str) -> str | None:
    """*ip* as an RFC 5321 address literal (`[192.0.2.1]`, `[IPv6:::1]`); None if not an IP."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"[{address.ipv4_mapped}]"
        return f"[IPv6:{clean_name(str(address), limit=64)}]"
    return f"[{address}]"


def _recipient(recipients: Sequence[str]) -> str | None:
    if len(recipients) != 1:
        return None
    address = recipients[0]
    if not address or len(address) > MAX_ADDRESS or not _PRINTABLE_ADDRESS.match(address):
        return None
    return f"<{address}>"


def fold(name: str, tokens: Sequence[str], *, width: int = FOLD_AT) -> bytes:
    """`name: token token ...` with CRLF TAB between tokens wherever a line would
    pass *width* columns; ends with CRLF."""
    lines: list[str] = []
    line = f"{name}:"
    for token in tokens:
        if len(line) + 1 + len(token) > width and line.strip() not in (f"{name}:", ""):
            lines.append(line)
            line = "\t" + token
        else:
            line = f"{line} {token}"
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def received_header(*, helo: str | None, reverse_name: str | None, client_ip: str,
                    by: str, esmtp: bool, tls: TlsInfo | None, mid: int,
                    recipients: Sequence[str], when: datetime | None = None) -> bytes:
    """The `Received:` header field (folded, CRLF-terminated) for one accepted message.

    *reverse_name* is the client's verified reverse DNS name, None when unknown;
    *when* defaults to now, in local time with its offset.
    """
    # Folded only between clauses: each stays whole on its line.
    tokens = [f"from {clean_name(helo)}"]
    literal = address_literal(client_ip)
    origin = clean_name(reverse_name)
    tokens.append(f"({origin} {literal})" if literal is not None else f"({origin})")
    if tls is not None:
        bits = f" ({int(tls.bits)} bits)" if tls.bits else ""
        tokens.append(f"(using {clean_name(tls.protocol, limit=32)} with cipher "
                      f"{clean_name(tls.cipher, limit=64)}{bits})")
    protocol = "ESMTPS" if tls is not None else "ESMTP" if esmtp else "SMTP"
    tokens += [f"by {clean_name(by)}", f"with {protocol}", f"id {int(mid)}"]
    rcpt = _recipient(recipients)
    if rcpt is not None:
        tokens.append(f"for {rcpt}")
    tokens[-1] += ";"
    if when is None:
        tokens.append(_now_text(int(time.time())))
    else:
        tokens.append(format_datetime(when if when.tzinfo is not None else when.astimezone()))
    header = fold("Received", tokens)
    assert len(header) <= MAX_HEADER
    return header


@functools.lru_cache(maxsize=2)
def _now_text(second: int) -> str:
    """The RFC 5322 date of *second* in local time (to the second: rendered once each)."""
    return format_datetime(datetime.fromtimestamp(second).astimezone())
