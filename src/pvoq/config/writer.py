"""Changes made to the configuration file by the appliance itself (the web console).

The operator's XML file stays the one source of the configuration: a page
that changes a setting rewrites only the element it changes, byte for byte
around it (comments, order and spacing elsewhere are kept), checks the new
text as `pvoq config check` does, and replaces the file atomically (write,
fsync, rename, directory fsync). The caller then reloads it by the same path
as `reload`.

`elements` maps the file's elements to their byte spans (expat's offsets,
parsed without DTD or entities); `splice` replaces a span; `check_text`
loads a candidate text exactly as the appliance would from the file's own
directory (relative paths resolve the same way) and checks its
certificates; `replace_file` writes it in place of the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import xml.parsers.expat
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from pvoq.config.certs import check_certificates
from pvoq.config.errors import ConfigError
from pvoq.config.loader import load_config
from pvoq.config.model import Config
from pvoq.config.xmltree import MAX_BYTES
from pvoq.fsutil import fsync_dir, temp_name

_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


class ConfigEditError(ConfigError):
    """The file cannot be edited by the appliance (its shape, its encoding, a race)."""


@dataclass(eq=False)
class Element:
    """One element of the file: its tag, byte span, direct text and children."""

    tag: str
    start: int                  # offset of its "<"
    end: int = 0                # offset just past its last ">"
    close: int = 0              # offset of its end tag's "<" (== end for <x/>)
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def all(self, tag: str) -> list[Element]:
        return [c for c in self.children if c.tag == tag]

    def first(self, tag: str) -> Element | None:
        return next((c for c in self.children if c.tag == tag), None)


def version(data: bytes) -> str:
    """A short digest of the file's content: a form carries it, so that a change made
    meanwhile (another administrator, an editor) is noticed instead of overwritten."""
    return hashlib.sha256(data).hexdigest()[:20]


def elements(data: bytes) -> Element:
    """The root element of *data* with every element's byte span (`ConfigEditError` if
    the file is not UTF-8 XML without a DTD)."""
    declared = _ENCODING.match(data)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
        raise ConfigEditError(f"the file is encoded in {declared.group(1).decode()}; the "
                              "appliance edits UTF-8 files only", field="file")
    parser = xml.parsers.expat.ParserCreate("utf-8")
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Element] = []
    roots: list[Element] = []
    content: list[bool] = []

    def refuse(*_: object) -> None:
        raise ConfigEditError("a DTD or an entity declaration is not allowed", field="file")

    def start(tag: str, attrs: dict[str, str]) -> None:
        if content:
            content[-1] = True
        node = Element(tag, parser.CurrentByteIndex)
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)
        content.append(False)

    def end(tag: str) -> None:
        node = stack.pop()
        at = parser.CurrentByteIndex
        had_content = content.pop()
        if not had_content and data[at - 2:at] == b"/>" and at > node.start:
            node.close = node.end = at          # <tag/>: the event ends the tag
        else:
            node.close = at
            node.end = data.index(b">", at) + 1

    def chars(text: str) -> None:
        content[-1] = True
        stack[-1].text += text

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as exc:
        raise ConfigEditError(f"not well-formed XML: {xml.parsers.expat.errors.messages[exc.code]}",
                              field="file", line=exc.lineno) from None
    if len(roots) != 1:
        raise ConfigEditError("no root element", field="file")
    return roots[0]


def splice(data: bytes, start: int, end: int, new: str) -> bytes:
    """*data* with bytes [start, end) replaced by *new* (UTF-8)."""
    return data[:start] + new.encode("utf-8") + data[end:]


def line_indent(data: bytes, offset: int) -> str:
    """The spaces and tabs that begin the line *offset* is on (up to *offset*)."""
    begin = data.rfind(b"\n", 0, offset) + 1
    prefix = data[begin:offset]
    return prefix.decode("utf-8") if prefix.strip(b" \t") == b"" else ""


def remove_element(data: bytes, node: Element) -> bytes:
    """*data* without *node*; its line too, when nothing else is on it."""
    begin = data.rfind(b"\n", 0, node.start) + 1
    newline = data.find(b"\n", node.end)
    stop = len(data) if newline < 0 else newline + 1
    if data[begin:node.start].strip(b" \t") == b"" and data[node.end:stop].strip() == b"":
        return data[:begin] + data[stop:]
    return data[:node.start] + data[node.end:]


def insert_child(data: bytes, parent: Element, xml_text: str, step: str) -> bytes:
    """*data* with *xml_text* (already indented by the caller for a child of *parent*,
    starting with its indent, ending with a newline) added as *parent*'s last child."""
    if parent.close == parent.end and parent.end > parent.start and data[
            parent.end - 2:parent.end] == b"/>" and not parent.children:
        indent = line_indent(data, parent.start)
        opened = f"<{parent.tag}>\n{xml_text}{indent}</{parent.tag}>"
        return splice(data, parent.start, parent.end, opened)
    begin = data.rfind(b"\n", 0, parent.close) + 1
    if data[begin:parent.close].strip(b" \t") == b"":
        return data[:begin] + xml_text.encode("utf-8") + data[begin:]
    indent = line_indent(data, parent.start)
    return splice(data, parent.close, parent.close, "\n" + xml_text + indent)


def indent_step(data: bytes, root: Element) -> str:
    """The indentation one level adds in this file (that of the root's first child)."""
    for child in root.children:
        found = line_indent(data, child.start)
        if found:
            return found
    return "  "


def text_value(value: str, what: str) -> str:
    """*value* escaped for an element's text; a character XML cannot hold is refused
    naming *what*."""
    if _CONTROL.search(value):
        raise ConfigEditError("control characters are not allowed", field=what)
    return escape(value)


def check_text(path: Path, data: bytes) -> Config:
    """*data* loaded as the appliance loads *path*, and its certificates checked as
    `pvoq config check` does; the first problem raised as a `ConfigError` located in
    *path*. The candidate is written beside *path* (relative paths resolve the same)."""
    if len(data) > MAX_BYTES:
        raise ConfigEditError(f"the file would be larger than {MAX_BYTES} bytes", field="file")
    candidate = _candidate(path)
    try:
        _write(candidate, data, _mode_of(path))
        try:
            config = load_config(candidate)
        except ConfigError as exc:
            raise exc.located(path=str(path)) from None
        problems = check_certificates(config)
        if problems:
            raise problems[0].located(path=str(path))
        return config
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(candidate)


def replace_file(path: Path, data: bytes, *, expected: bytes | None = None) -> None:
    """Replace *path* with *data* atomically, keeping its mode; when *expected* is
    given, refuse (`ConfigEditError`) if the file no longer holds it."""
    path = Path(path)
    if expected is not None and path.read_bytes() != expected:
        raise ConfigEditError("the configuration file changed meanwhile; nothing was "
                              "written (show the page again)", field="file")
    tmp = temp_name(path)
    try:
        _write(tmp, data, _mode_of(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _candidate(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.check.tmp")


def _mode_of(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return 0o640


def _write(path: Path, data: bytes, mode: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
