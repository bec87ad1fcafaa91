"""A tiny element tree that remembers line numbers, parsed safely and in linear time.

The standard ElementTree forgets where an element was; an operator needs the
line. We parse with defusedxml's SAX parser (no DTD, no entities, no external
references) and keep, for each element, its tag, text, children and line.

Limits (`MAX_BYTES`, `MAX_ELEMENTS`, `MAX_DEPTH`) bound what one file may
cost: past any of them the file is refused with a `ConfigError` saying which
limit, and where. Parsing and each lookup are linear in the file: children
are indexed by tag, so a section with many siblings costs no more per
element than a small one.

The tree also tells the loader what the file says that it never asked for:
each lookup (`first`, `require`, `all`) records the tag asked for, `first`
refuses an element given twice where one value is taken, and `unknown`
names the first element no lookup asked for (a misspelt or misplaced element
would otherwise be silently ignored).
"""

from __future__ import annotations

import xml.sax
from collections.abc import Iterable
from dataclasses import dataclass, field
from xml.parsers.expat import errors as expat_errors
from xml.sax.handler import ContentHandler
from xml.sax.xmlreader import Locator

import defusedxml.sax
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden

from pvoq.config.errors import ConfigError

MAX_BYTES = 16 * 1024 * 1024
"""The largest configuration file read (a manager serving thousands of gateways is ~1 MB)."""
MAX_ELEMENTS = 50_000
"""Elements in one file."""
MAX_DEPTH = 32
"""Nesting of elements (a clustered file nests about ten deep)."""


@dataclass(eq=False)
class Node:
    tag: str
    line: int
    path: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    asked: set[str] = field(default_factory=set, repr=False)
    _index: dict[str, list[Node]] = field(default_factory=dict, repr=False)
    _indexed: int = field(default=0, repr=False)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def _by_tag(self, tag: str) -> list[Node]:
        """The children named *tag*, from an index kept up to date with `children`."""
        if self._indexed != len(self.children):
            self._index = {}
            for child in self.children:
                self._index.setdefault(child.tag, []).append(child)
            self._indexed = len(self.children)
        return self._index.get(tag, [])

    def all(self, tag: str) -> list[Node]:
        """Every child *tag* (an element that may be repeated)."""
        self.asked.add(tag)
        return list(self._by_tag(tag))

    def first(self, tag: str) -> Node | None:
        """The child *tag*, which takes one value: given twice, it is refused."""
        self.asked.add(tag)
        found = self._by_tag(tag)
        if len(found) > 1:
            raise ConfigError(f"<{tag}> is given twice, on lines {found[0].line} and "
                              f"{found[1].line}; it takes one value",
                              field=f"{self.path}.{tag}", line=found[1].line)
        return found[0] if found else None

    def require(self, tag: str) -> Node:
        found = self.first(tag)
        if found is None:
            raise ConfigError(f"missing <{tag}> in <{self.tag}>", field=f"{self.path}.{tag}",
                              line=self.line)
        return found

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, field=self.path, line=self.line)


def unknown(root: Node, *, skip: Iterable[str] = ()) -> ConfigError | None:
    """The first element under *root* that no lookup asked for, as an error; or None.

    Only the elements that were asked for are searched further (a value's
    children are all unknown). Children named in *skip* are not searched.
    """
    skipped = set(skip)
    stack = [root]
    while stack:
        node = stack.pop()
        for child in node.children:
            if child.tag not in node.asked:
                known = ", ".join(f"<{t}>" for t in sorted(node.asked)) or "none"
                return ConfigError(f"unknown element <{child.tag}> in <{node.tag}> "
                                   f"(known here: {known})", field=child.path, line=child.line)
        stack.extend(reversed([c for c in node.children if c.tag not in skipped]))
    return None


class _Builder(ContentHandler):
    def __init__(self) -> None:
        super().__init__()
        self.root: Node | None = None
        self.stack: list[Node] = []
        self.counts: list[dict[str, int]] = []   # per open element: children seen by tag
        self.elements = 0
        self.locator: Locator | None = None

    def setDocumentLocator(self, locator: Locator) -> None:  # SAX API
        self.locator = locator

    def line(self) -> int:
        return (self.locator.getLineNumber() or 0) if self.locator else 0

    def startElement(self, name: str, attrs) -> None:  # SAX API
        line = self.line()
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise ConfigError(f"more than {MAX_ELEMENTS} elements: refused", field="xml",
                              line=line)
        if len(self.stack) >= MAX_DEPTH:
            raise ConfigError(f"elements nested more than {MAX_DEPTH} deep: refused "
                              f"(<{name}> in {self.stack[-1].path})", field="xml", line=line)
        if self.stack:
            parent = self.stack[-1]
            seen = self.counts[-1]
            index = seen.get(name, 0)
            seen[name] = index + 1
            path = f"{parent.path}.{name}" if index == 0 else f"{parent.path}.{name}[{index + 1}]"
            node = Node(name, line, path, dict(attrs))
            parent.children.append(node)
        else:
            node = Node(name, line, name, dict(attrs))
            self.root = node
        self.stack.append(node)
        self.counts.append({})

    def endElement(self, name: str) -> None:  # SAX API
        self.stack.pop()
        self.counts.pop()

    def characters(self, content: str) -> None:
        if self.stack:
            self.stack[-1].parts.append(content)


def _last_line(data: bytes) -> int:
    """The number of the last line of *data* (a final newline does not start a line)."""
    return max(1, data.count(b"\n") + (0 if data.endswith(b"\n") else 1))


def _syntax_error(exc: xml.sax.SAXParseException, builder: _Builder, data: bytes,
                  path: str) -> ConfigError:
    """A parse error as the operator needs it: the unclosed element and where it opened."""
    message = exc.getMessage()
    line = min(exc.getLineNumber() or 1, _last_line(data))
    if builder.stack and message in (expat_errors.XML_ERROR_NO_ELEMENTS,
                                     expat_errors.XML_ERROR_TAG_MISMATCH,
                                     expat_errors.XML_ERROR_UNCLOSED_TOKEN):
        open_node = builder.stack[-1]
        stopped = ("the file ends" if message == expat_errors.XML_ERROR_NO_ELEMENTS
                   else f"{message} on line {line}")
        return ConfigError(f"<{open_node.tag}> opened on line {open_node.line} is not closed "
                           f"({stopped})", field=open_node.path, line=open_node.line, path=path)
    if message == expat_errors.XML_ERROR_NO_ELEMENTS:
        return ConfigError("empty document (no element)", field="xml", line=line, path=path)
    return ConfigError(message, field="xml", line=line, path=path)


def parse_xml(data: bytes, *, path: str) -> Node:
    """Parse *data*; a malformed or refused document raises ConfigError with its line."""
    if len(data) > MAX_BYTES:
        raise ConfigError(f"the file is larger than {MAX_BYTES} bytes: refused",
                          field="xml", path=path)
    builder = _Builder()
    try:
        defusedxml.sax.parseString(data, builder, forbid_dtd=True)
    except xml.sax.SAXParseException as exc:
        raise _syntax_error(exc, builder, data, path) from None
    except ConfigError as exc:
        raise exc.located(path=path) from None
    except DefusedXmlException as exc:
        raise ConfigError(_refusal(exc), field="xml", line=builder.line() or None,
                          path=path) from None
    if builder.root is None:
        raise ConfigError("empty document", field="xml", path=path)
    return builder.root


def _refusal(exc: DefusedXmlException) -> str:
    """Why a document was refused for what it declares, in an operator's words."""
    if isinstance(exc, DTDForbidden):
        return f"a DOCTYPE ({exc.name!r}) is refused: a configuration has no DTD"
    if isinstance(exc, EntitiesForbidden):
        return f"an entity declaration ({exc.name!r}) is refused: a configuration has none"
    return f"refused: {exc} (no DTD, entity or external reference is allowed)"
