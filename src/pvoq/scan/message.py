"""A message as the checks see it: envelope plus a lazily parsed MIME view.

Owns decoding (RFC 2047 headers, base64 and quoted-printable parts), the
list of attachments (name, MIME type, size, SHA-256) and the URLs found in
the text. Every view is computed once, on first use, so a check that only
looks at the envelope costs nothing. This module never decides anything and
never does I/O.

It also owns the limits of what is parsed at all (`MimeLimits`): before the
email package sees a message (its parser and `walk` recurse once per level
of nesting), `check_structure` reads the raw bytes once, line by line,
following multipart boundaries and `message/*` parts with an explicit stack,
and raises `Unscannable` for a message nested deeper, with more parts, or
with more header fields in one header section than the limits allow. A
parser failure on what remains (RecursionError included) is `Unscannable`
too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.errors import MessageError
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32
from functools import cached_property, partial

from pvoq.errors import PvoqError
from pvoq.scan.mimewalk import NotWalkable, crlf_only, header_end, leaves, parse_headers

_URL = re.compile(rb"https?://(?:[^\s/?#@\"'<>]*@)?([A-Za-z0-9.\-]+)(?::\d+)?(/[^\s\"'<>]*)?",
                  re.IGNORECASE)


class Unscannable(PvoqError):
    """The message cannot be scanned, now or ever: its MIME structure is beyond the
    scan limits, or the parser failed on it. Not a temporary failure: the message
    gets the configured `unscannable_action` (`scan.pipeline`).
    On the exception tree beside `SpoolLogError`: no edge maps it, the pipeline
    turns it into a result."""


_HEADER = re.compile(rb"^(From |[\041-\071\073-\176]*:|[\t ])")  # the email parser's
_CONTENT_TYPE = re.compile(rb"^content-type:", re.IGNORECASE)
_MAINTYPE = re.compile(rb"^\s*([a-z0-9!#$&.+\-^_]+)/", re.IGNORECASE)
_BOUNDARY = re.compile(rb"""boundary\s*=\s*(?:"([^"]*)"|([^;\s]+))""", re.IGNORECASE)


@dataclass(frozen=True)
class MimeLimits:
    """How deep, how many parts and how many header fields per section a scan takes."""

    max_depth: int = 50
    max_parts: int = 1000
    max_headers: int = 1000


def check_structure(body: bytes, limits: MimeLimits) -> None:
    """Raise `Unscannable` if *body*'s MIME structure is beyond *limits*.

    One pass over the lines, no recursion: a stack of the open multipart
    boundaries (each with its level), the current level (a multipart's part
    or a `message/*` part's content is one level deeper), the parts seen
    and the header fields of the current header section. Time and memory are
    linear in the size of the message (a delimiter is looked up, not searched
    for) and the stack never exceeds the depth limit.
    """
    stack: list[tuple[bytes, int]] = []  # open boundaries, "--" prepended, and their level
    open_at: dict[bytes, int] = {}  # delimiter → its place in the stack (the innermost)
    depth, parts, in_headers, headers, ct_index = 0, 1, True, 0, 0
    content_type = b""
    for raw in _lines(body):
        if in_headers:
            if raw.strip() and _HEADER.match(raw):
                if raw[:1] in (b" ", b"\t"):
                    if content_type and headers == ct_index:
                        content_type += b" " + raw.strip()
                    continue
                headers += 1
                if headers > limits.max_headers:
                    raise Unscannable(f"more than {limits.max_headers} header fields in one "
                                      f"header section")
                if _CONTENT_TYPE.match(raw):
                    content_type, ct_index = raw.split(b":", 1)[1], headers
                continue
            in_headers = False  # the blank line (or a line that is no header) ends them
            maintype = _MAINTYPE.match(content_type)
            kind = maintype.group(1).lower() if maintype else b"text"
            boundary = _BOUNDARY.search(content_type) if kind == b"multipart" else None
            content_type, headers = b"", 0
            if boundary is not None:
                delimiter = b"--" + (boundary.group(1) or boundary.group(2) or b"")
                open_at[delimiter] = len(stack)
                stack.append((delimiter, depth))
            elif kind == b"message":
                depth, in_headers, parts = depth + 1, True, parts + 1
                _check_depth_parts(depth, parts, limits)
            if not raw.strip():
                continue
        if not stack or not raw.startswith(b"--"):
            continue
        line = raw.rstrip()
        if line.endswith(b"--") and (i := open_at.get(line[:-2])) is not None:
            depth = stack[i][1]  # the closing delimiter: back to its multipart's level
            del stack[i:]
        elif (i := open_at.get(line)) is not None:
            depth, in_headers, parts = stack[i][1] + 1, True, parts + 1
            _check_depth_parts(depth, parts, limits)
            if i + 1 == len(stack):
                continue
            del stack[i + 1:]  # inner multiparts left open end here
        else:
            continue
        open_at = {d: k for k, (d, _) in enumerate(stack)}


def _lines(body: bytes, chunk: int = 1 << 20) -> Iterator[bytes]:
    """`body.splitlines()`, a chunk of about *chunk* bytes (cut after an LF) at a time, so
    that a large message is never a list of all its lines at once."""
    start, size = 0, len(body)
    while start < size:
        cut = body.find(b"\n", min(start + chunk, size) - 1)
        end = size if cut < 0 else cut + 1
        yield from body[start:end].splitlines()
        start = end


def _check_depth_parts(depth: int, parts: int, limits: MimeLimits) -> None:
    if depth > limits.max_depth:
        raise Unscannable(f"MIME nesting deeper than {limits.max_depth} levels")
    if parts > limits.max_parts:
        raise Unscannable(f"more than {limits.max_parts} MIME parts")


def decoded_header(value: object) -> str:
    """A header as a person reads it: RFC 2047 encoded-words decoded."""
    raw = str(value)
    try:
        return str(make_header(decode_header(raw)))
    except (ValueError, LookupError, UnicodeError, MessageError):  # `=?\x80?q??=`: CharsetError
        return raw


@dataclass(frozen=True)
class Envelope:
    """What the SMTP session knew: sender, recipients, peer and its sender group."""

    mail_from: str = ""
    rcpt_to: tuple[str, ...] = ()
    remote_ip: str = ""
    sender_group: str = ""


class Attachment:
    """An attachment as the checks see it: name, type, decoded size and SHA-256, and its
    decoded content (`payload`), which a message walked part by part (`ScanMessage`
    above `WALK_ABOVE`) decodes again when asked instead of keeping it."""

    __slots__ = ("filename", "content_type", "_payload", "_load", "_size", "_sha256")

    def __init__(self, filename: str, content_type: str, payload: bytes | None = None, *,
                 load: Callable[[], bytes] | None = None, size: int = 0,
                 sha256: str | None = None) -> None:
        self.filename = filename
        self.content_type = content_type
        self._payload = payload
        self._load = load
        self._size = len(payload) if payload is not None else size
        self._sha256 = sha256

    def __repr__(self) -> str:
        return (f"Attachment(filename={self.filename!r}, content_type={self.content_type!r}, "
                f"size={self.size})")

    @property
    def payload(self) -> bytes:
        if self._payload is not None:
            return self._payload
        return self._load() if self._load is not None else b""

    @property
    def size(self) -> int:
        return self._size

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            import hashlib  # here: OpenSSL's libcrypto (4 MB) only for a rule that asks for a hash

            self._sha256 = hashlib.sha256(self.payload).hexdigest()
        return self._sha256

    @property
    def extension(self) -> str:
        name = self.filename.lower()
        return name.rpartition(".")[2] if "." in name else ""


def part_filename(part: Message) -> str:
    """The part's file name; "" if none. An RFC 2231 name in a charset that cannot
    decode it (`filename*=idna''%ff`: the email package raises) is its text as sent."""
    try:
        return part.get_filename() or ""
    except (LookupError, UnicodeError, ValueError):
        for value in (part.get_param("filename", None, "content-disposition"),
                      part.get_param("name", None)):
            if value:
                return str(value[2] if isinstance(value, tuple) else value).strip()
        return ""


def _is_attachment(part: Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).lower()
    return bool(part_filename(part)) or disposition.startswith("attachment")


def _text(payload: bytes, charset: str) -> str:
    """*payload* decoded in its *charset*; as UTF-8 when that charset is unknown or
    cannot decode with replacement (`idna`, `undefined`, a NUL in the name)."""
    try:
        return payload.decode(charset, "replace")
    except (LookupError, UnicodeError, ValueError):
        return payload.decode("utf-8", "replace")


# A larger message is walked part by part (`mimewalk`): every message, since the walk
# reads a 10 KB one in a third of the email package's time (and the anti-virus check
# then parses nothing again); what the walk does not follow is parsed whole.
WALK_ABOVE = 0


@dataclass
class _Views:
    """What the checks read from the leaves, gathered in one pass over them."""

    attachments: list[Attachment] = field(default_factory=list)
    body_texts: list[str] = field(default_factory=list)
    urls: list[tuple[str, str]] = field(default_factory=list)


class ScanMessage:
    """One message's bytes and envelope, with the views the checks need.

    A message larger than `WALK_ABOVE` bytes (every one, by default) is walked part by
    part (`mimewalk.leaves`): each leaf is decoded once, read for what the checks need
    (URLs, text, attachment size and SHA-256), and dropped, so that a scan holds the
    message and one decoded part, not a parsed copy of the message and a decoded copy
    of every part. A message the walk does not follow (a line end other than CRLF, a
    broken multipart...) is parsed whole by the email package.
    """

    def __init__(self, body: bytes, envelope: Envelope | None = None) -> None:
        self.body = body
        self.envelope = envelope or Envelope()

    @property
    def size(self) -> int:
        return len(self.body)

    @cached_property
    def message(self) -> Message:
        """The parsed message (`Unscannable` if the parser fails on it)."""
        try:
            return message_from_bytes(self.body, policy=compat32)
        except RecursionError:
            raise Unscannable("the MIME parser ran out of stack (nesting too deep)") from None

    @cached_property
    def head(self) -> Message:
        """The message's header section, parsed (what the header checks read): alone for a
        message walked part by part, from the whole parse otherwise."""
        if len(self.body) <= WALK_ABOVE or not crlf_only(self.body):
            return self.message
        end, _ = header_end(self.body, 0, len(self.body))
        return parse_headers(self.body, 0, end)

    def headers(self, name: str) -> list[str]:
        """Every value of header *name*, decoded."""
        return [decoded_header(v) for v in (self.head.get_all(name, []) or [])]

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
    def _views(self) -> _Views:
        if len(self.body) > WALK_ABOVE:
            try:
                return self._walked()
            except NotWalkable:
                pass
        views = _Views()
        for part, payload in self._leaves:
            _read_leaf(views, part, payload)
        views.urls = _urls([self.body, *(p for _, p in self._leaves)])
        return views

    def _walked(self) -> _Views:
        views = _Views()
        payloads: list[bytes] = [self.body]
        body = self.body
        for leaf in leaves(body):
            payload = leaf.decode(body)
            _read_leaf(views, leaf.part, payload, load=partial(leaf.decode, body))
            payloads.append(payload)
            views.urls = _urls(payloads, views.urls)
            payloads = []
        if len(payloads) == 1:  # no leaf at all
            views.urls = _urls(payloads, views.urls)
        return views

    @property
    def attachments(self) -> list[Attachment]:
        return self._views.attachments

    @property
    def body_texts(self) -> list[str]:
        """The decoded text of the parts that are not attachments."""
        return self._views.body_texts

    @property
    def urls(self) -> list[tuple[str, str]]:
        """(host, path) of every http(s) URL in the raw message and its decoded parts."""
        return self._views.urls


def _read_leaf(views: _Views, part: Message, payload: bytes, *,
               load: Callable[[], bytes] | None = None) -> Attachment | None:
    """Add what *part* (decoded: *payload*) gives the views; its attachment if it is one."""
    if _is_attachment(part):
        name, ctype = decoded_header(part_filename(part)), part.get_content_type().lower()
        if load is None:
            attachment = Attachment(name, ctype, payload)
        else:  # hashed now: the payload is not kept (libcrypto loads for large mail only)
            import hashlib

            attachment = Attachment(name, ctype, load=load, size=len(payload),
                                    sha256=hashlib.sha256(payload).hexdigest())
        views.attachments.append(attachment)
        return attachment
    if part.get_content_maintype() == "text":
        views.body_texts.append(_text(payload, part.get_content_charset() or "utf-8"))
    return None


def url_matches(payload: bytes) -> Iterator[re.Match[bytes]]:
    """What `_URL.finditer(payload)` finds, found faster: the pattern (case-insensitive,
    so without a literal prefix the regex engine can skip to) is tried only where `://`
    follows `http` or `https`, which a plain byte search finds."""
    end = 0  # where the last match ended: the next one starts there or later
    found = payload.find(b"://")
    while found >= 0:
        if found >= 5 and payload[found - 5:found].lower() == b"https":
            start = found - 5
        elif found >= 4 and payload[found - 4:found].lower() == b"http":
            start = found - 4
        else:
            start = -1
        if start >= end and (match := _URL.match(payload, start)) is not None:
            yield match
            end = match.end()
        found = payload.find(b"://", max(found + 1, end))


def _urls(payloads: list[bytes], seen: list[tuple[str, str]] | None = None
          ) -> list[tuple[str, str]]:
    seen = [] if seen is None else seen
    for payload in payloads:
        for m in url_matches(payload):
            host = m.group(1).decode("ascii", "replace").lower().rstrip(".")
            path = (m.group(2) or b"/").decode("ascii", "replace")
            if (host, path) not in seen:
                seen.append((host, path))
    return seen
