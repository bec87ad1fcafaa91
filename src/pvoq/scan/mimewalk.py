"""A message's MIME leaves found in its bytes, each decoded only when asked for.

The email package parses a message into a tree of strings: the whole message
as text, a list of its lines while it parses, each part's content as a
string, and a decoded copy of each part on `get_payload(decode=True)`. For a
50 MB attachment that is several copies of it at once. `leaves` walks the
same tree over the message's bytes instead: for each part it parses only the
header section (with the email package, so that content types, parameters
and file names read the same), finds the parts of a multipart by searching
for its delimiter lines, and gives each leaf as a `Leaf`: its headers and
where its content lies. `Leaf.decode` decodes one part when asked, as
`get_payload(decode=True)` would, and nothing keeps it.

It follows what the email package's parser does with a message whose line
ends are all CRLF: a header section ends at its empty line (taken) or at the
first line that is no header (left to the content); a part ends before the
CRLF that precedes the next delimiter line (`--boundary`, optionally `--`,
then spaces or tabs to the end of the line); an inner multipart ends where its
enclosing part does; `message/rfc822` content is a message of its own. What
it does not follow raises `NotWalkable`, and the caller parses with the email
package as before: a line end other than CRLF, a multipart without its
boundary or whose first or close delimiter is missing, two delimiter lines in
a row, a boundary that is not ASCII, `message/*` other than rfc822, nesting deeper
than the limit. Uuencoded content
and base64 that the plain decoder refuses are decoded by the email package,
one part.
"""

from __future__ import annotations

import binascii
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import Policy, compat32

_HEADER = re.compile(rb"(From |[\041-\071\073-\176]*:|[\t ])")  # the email parser's
_PARSER = BytesParser(policy=compat32)
MAX_DEPTH = 64


class NotWalkable(Exception):
    """The message has a shape `leaves` does not follow; parse it with the email package."""


@dataclass(frozen=True)
class Leaf:
    """One part that is neither multipart nor `message/*`: its header section, parsed,
    and its content's place in the message (`body[start:end]`)."""

    part: Message
    start: int
    end: int

    def decode(self, body: bytes) -> bytes:
        """The content decoded as `Message.get_payload(decode=True)` decodes it."""
        cte = str(self.part.get("content-transfer-encoding", "")).lower()
        if cte == "base64":
            with memoryview(body) as view:  # decoded from the message, not from a copy
                try:
                    return binascii.a2b_base64(view[self.start:self.end])
                except binascii.Error:  # padding the email package repairs: let it
                    pass
        raw = body[self.start:self.end]
        if cte == "quoted-printable":
            return quopri.decodestring(raw)
        if cte == "base64":
            payload = _whole(self.part, raw).get_payload(decode=True)
            return payload if isinstance(payload, bytes) else b""
        if cte in ("x-uuencode", "uuencode", "uue", "x-uue"):
            payload = _whole(self.part, raw).get_payload(decode=True)
            return payload if isinstance(payload, bytes) else b""
        return raw


def _whole(part: Message, raw: bytes) -> Message:
    """*part* with *raw* as its content, parsed by the email package (the rare cases)."""
    msg = Message(policy=part.policy)
    for name, value in part.items():
        msg[name] = value
    msg.set_payload(raw.decode("ascii", "surrogateescape"))
    return msg


def crlf_only(body: bytes) -> bool:
    pairs = body.count(b"\r\n")
    return body.count(b"\r") == pairs and body.count(b"\n") == pairs


def header_end(body: bytes, start: int, end: int) -> tuple[int, int]:
    """(end of the header section, start of the content) of the entity at *start*."""
    pos = start
    while pos < end:
        eol = body.find(b"\r\n", pos, end)
        line_end = end if eol < 0 else eol + 2
        if body.startswith(b"\r\n", pos) and pos + 2 == line_end:
            return pos, line_end  # the empty line: taken
        if not _HEADER.match(body, pos, line_end):
            return pos, pos  # no header: the content starts with this line
        pos = line_end
    return end, end


def parse_headers(body: bytes, start: int, stop: int, policy: Policy = compat32) -> Message:
    parser = _PARSER if policy is compat32 else BytesParser(policy=policy)
    return parser.parsebytes(body[start:stop], headersonly=True)


def leaves(body: bytes, *, max_depth: int = MAX_DEPTH, policy: Policy = compat32
           ) -> Iterator[Leaf]:
    """Every leaf of *body*'s MIME tree in the order `Message.walk` gives them, each
    part's headers parsed under *policy*."""
    if not crlf_only(body):
        raise NotWalkable("a line end other than CRLF")
    yield from _entity(body, 0, len(body), 0, max_depth, policy)


def _entity(body: bytes, start: int, end: int, depth: int, max_depth: int,
            policy: Policy) -> Iterator[Leaf]:
    """The leaves of the entity at *start*, whose content ends at *end*."""
    if depth > max_depth:
        raise NotWalkable("nesting deeper than the walk follows")
    head_end, content = header_end(body, start, end)
    part = parse_headers(body, start, head_end, policy)
    maintype = part.get_content_maintype()
    if maintype == "message":
        if part.get_content_subtype() != "rfc822":
            raise NotWalkable(f"{part.get_content_type()} content")
        yield from _entity(body, content, end, depth + 1, max_depth, policy)
        return
    if maintype != "multipart":
        yield Leaf(part, content, max(content, end))
        return
    boundary = part.get_boundary()
    if not boundary:
        raise NotWalkable("a multipart without a boundary")
    try:
        marker = b"--" + boundary.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:  # the header's bytes read as something else: parsed whole
        raise NotWalkable("a boundary that is not ASCII") from None
    delimiter = re.compile(re.escape(marker) + rb"(--)?[ \t]*(?:\r\n|\Z)")
    found = _delimiter(body, marker, delimiter, content, end)
    if found is None:
        raise NotWalkable("the multipart's first delimiter is missing")
    while not found.group(1):
        part_start = found.end()
        found = _delimiter(body, marker, delimiter, part_start, end)
        if found is None:
            raise NotWalkable("the multipart's close delimiter is missing")
        if found.start() == part_start:  # the email package merges delimiters in a row
            raise NotWalkable("a delimiter line right after another")
        yield from _entity(body, part_start, max(part_start, found.start() - 2), depth + 1,
                           max_depth, policy)


def _delimiter(body: bytes, marker: bytes, delimiter: re.Pattern[bytes], start: int,
               end: int) -> re.Match[bytes] | None:
    """The first delimiter line in `body[start:end]` (*start* is a line's start): a line
    that starts with *marker* and matches *delimiter*. Found with a byte search for the
    marker after a CRLF (a multi-line regex search has no literal to skip to)."""
    at = start
    if not body.startswith(marker, at, end):
        at = body.find(b"\r\n" + marker, max(at - 2, 0), end)
        at = -1 if at < 0 else at + 2
    while at >= 0:
        if at >= start and (match := delimiter.match(body, at, end)) is not None:
            return match
        at = body.find(b"\r\n" + marker, at, end)
        at = -1 if at < 0 else at + 2
    return None
