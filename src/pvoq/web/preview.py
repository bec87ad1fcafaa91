"""A held message as the console previews it: text part, sanitized HTML part, attachments.

Everything here came in with mail and is hostile. The HTML part goes
through nh3 (the Rust `ammonia` sanitizer) with its default safe tags: no
script or style (their content dropped), no event handler or `style`
attribute, no form, iframe, object, embed, svg, link, meta or base; links
keep only `http`, `https` and `mailto` targets. Images:

- `cid:` images become `data:` URIs of the message's own inline image parts;
- `data:image/...` stays;
- a remote (`http`, `https`, `//`) image is replaced by a placeholder unless
  the viewer asked to load remote images; then it stays, and its origin is
  added to the preview's `img-src`;
- anything else (relative URLs, other schemes) is dropped.

The sanitized fragment is served as its own document (`frame_document`) with
its own Content-Security-Policy (`frame_csp`: `default-src 'none'; img-src
data:` plus the remote origins only when asked, and `sandbox`), inside an
`<iframe sandbox>` without `allow-scripts`: even what the sanitizer missed
could neither run nor fetch anything by default.

The MIME tree is read within `scan.message.MimeLimits` (`check_structure`
first); a message beyond them, or that the parser fails on, previews as its
problem, never as an exception. Pure functions of bytes; no I/O.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from urllib.parse import urlsplit

import nh3

from pvoq.scan.message import (
    MimeLimits,
    ScanMessage,
    Unscannable,
    check_structure,
    decoded_header,
    part_filename,
)

MAX_TEXT_CHARS = 200_000        # characters of the text part shown
MAX_HTML_CHARS = 2_000_000      # characters of the HTML part sanitized
MAX_INLINE_IMAGE = 512 * 1024   # bytes of one cid: image inlined as data:
MAX_INLINE_TOTAL = 4 * 1024 * 1024
MAX_ORIGINS = 20                # remote image origins one preview may load
URL_SCHEMES = frozenset({"http", "https", "mailto", "data", "cid"})
LINK_SCHEMES = ("http:", "https:", "mailto:")
FRAME_SANDBOX = ""              # the iframe's `sandbox` value: every restriction on
PLACEHOLDER = "data:image/svg+xml;base64," + base64.b64encode(
    b'<svg xmlns="http://www.w3.org/2000/svg" width="120" height="24">'
    b'<rect width="120" height="24" fill="#eee" stroke="#999"/>'
    b'<text x="6" y="16" font-family="sans-serif" font-size="11" fill="#555">'
    b'remote image</text></svg>').decode()
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
_DATA_IMAGE = re.compile(r"data:image/(png|gif|jpeg|webp|bmp);", re.IGNORECASE)


@dataclass(frozen=True)
class AttachmentInfo:
    """An attachment as listed: its name (hostile: escape it), MIME type, decoded size."""

    name: str
    content_type: str
    size: int


@dataclass(frozen=True)
class Preview:
    """What the message page shows of a body."""

    text: str | None = None                 # the first text/plain part (may be cut)
    text_truncated: bool = False
    html: str | None = None                 # the sanitized HTML part, a fragment
    remote_images: int = 0                  # remote images found in the HTML part
    remote_origins: tuple[str, ...] = ()    # origins they load from (when asked)
    load_remote: bool = False
    attachments: list[AttachmentInfo] = field(default_factory=list)
    problem: str | None = None              # why the MIME tree could not be read


def _is_attachment(part: Message) -> bool:
    disposition = str(part.get("Content-Disposition", "")).lower()
    return bool(part_filename(part)) or disposition.startswith("attachment")


def _decode(payload: bytes, charset: str) -> str:
    try:
        return payload.decode(charset, "replace")
    except (LookupError, UnicodeError, ValueError):
        return payload.decode("utf-8", "replace")


def _origin(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) *url*, if it is one a CSP can name safely."""
    try:
        parts = urlsplit(url if not url.startswith("//") else "https:" + url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not _HOST.fullmatch(host):
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


class _Images:
    """The attribute filter of one sanitization: decides every `src`, counts remote ones."""

    def __init__(self, inline: Mapping[str, str], load_remote: bool) -> None:
        self.inline = inline
        self.load_remote = load_remote
        self.remote = 0
        self.origins: list[str] = []

    def __call__(self, tag: str, attr: str, value: str) -> str | None:
        if attr in ("href", "cite"):
            return value if value.lower().startswith(LINK_SCHEMES) else None
        if attr != "src":
            return value
        if tag != "img":
            return None
        lowered = value.strip().lower()
        if lowered.startswith("cid:"):
            return self.inline.get(value.strip()[4:].strip("<>"), PLACEHOLDER)
        if lowered.startswith("data:"):
            return value if _DATA_IMAGE.match(lowered) else None
        if not lowered.startswith(("http:", "https:", "//")):
            return None
        self.remote += 1
        if not self.load_remote:
            return PLACEHOLDER
        origin = _origin(value.strip())
        if origin is None:
            return PLACEHOLDER
        if origin not in self.origins:
            if len(self.origins) >= MAX_ORIGINS:
                return PLACEHOLDER
            self.origins.append(origin)
        return value


def sanitize_html(html: str, *, load_remote: bool = False,
                  inline: Mapping[str, str] | None = None) -> tuple[str, int, tuple[str, ...]]:
    """(*html* sanitized, how many remote images it has, the origins they load from)."""
    images = _Images(inline or {}, load_remote)
    clean = nh3.clean(html[:MAX_HTML_CHARS], url_schemes=set(URL_SCHEMES),
                      attribute_filter=images, link_rel="noopener noreferrer")
    return clean, images.remote, tuple(images.origins)


def preview(body: bytes, *, load_remote: bool = False,
            limits: MimeLimits | None = None) -> Preview:
    """The preview of message *body* (never raises on a hostile one)."""
    try:
        check_structure(body, limits or MimeLimits())
        leaves = [(part, part.get_payload(decode=True))
                  for part in ScanMessage(body).message.walk() if not part.is_multipart()]
    except (Unscannable, RecursionError) as exc:
        return Preview(problem=f"The message cannot be previewed: {exc}", load_remote=load_remote)
    except Exception as exc:  # the email package on hostile input: shown, never raised
        return Preview(problem=f"The message cannot be previewed: {type(exc).__name__}",
                       load_remote=load_remote)
    text: str | None = None
    html: str | None = None
    inline: dict[str, str] = {}
    inlined = 0
    attachments: list[AttachmentInfo] = []
    for part, payload in leaves:
        data = payload if isinstance(payload, bytes) else b""
        ctype = part.get_content_type().lower()
        cid = str(part.get("Content-ID", "")).strip().strip("<>")
        if cid and ctype.startswith("image/") and len(data) <= MAX_INLINE_IMAGE \
                and inlined + len(data) <= MAX_INLINE_TOTAL and _DATA_IMAGE.match(
                    f"data:{ctype};"):
            inline[cid] = f"data:{ctype};base64,{base64.b64encode(data).decode()}"
            inlined += len(data)
        if _is_attachment(part):
            attachments.append(AttachmentInfo(decoded_header(part_filename(part)) or "unnamed",
                                              ctype, len(data)))
        elif ctype == "text/plain" and text is None:
            text = _decode(data, part.get_content_charset() or "utf-8")
        elif ctype == "text/html" and html is None:
            html = _decode(data, part.get_content_charset() or "utf-8")
        elif not ctype.startswith("text/") and cid == "":
            attachments.append(AttachmentInfo("unnamed", ctype, len(data)))
    cut = text is not None and len(text) > MAX_TEXT_CHARS
    clean, remote, origins = (sanitize_html(html, load_remote=load_remote, inline=inline)
                              if html is not None else (None, 0, ()))
    return Preview(text=text[:MAX_TEXT_CHARS] if text is not None else None,
                   text_truncated=cut, html=clean, remote_images=remote,
                   remote_origins=origins, load_remote=load_remote,
                   attachments=attachments)


def frame_csp(p: Preview) -> str:
    """The Content-Security-Policy of the preview document: nothing but data: images, and
    the remote image origins only when the viewer asked for them."""
    images = " ".join(("data:", *p.remote_origins)) if p.load_remote else "data:"
    return (f"default-src 'none'; img-src {images}; style-src 'none'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'self'; sandbox")


def frame_document(p: Preview) -> str:
    """The sanitized HTML part as the iframe's document."""
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            "<meta name=\"referrer\" content=\"no-referrer\"></head><body>"
            f"{p.html or ''}</body></html>")


FRAME_HEADERS = {"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
                 "Cache-Control": "no-store", "Cross-Origin-Resource-Policy": "same-origin"}

__all__ = ["FRAME_HEADERS", "FRAME_SANDBOX", "PLACEHOLDER", "AttachmentInfo", "Preview",
           "frame_csp", "frame_document", "preview", "sanitize_html"]
