"""A tiny element tree that remembers line numbers, parsed safely.

The standard ElementTree forgets where an element was; an operator needs the
line. We parse with defusedxml's SAX parser (no entities, no external DTDs)
and keep, for each element, its tag, text, children and line.
"""

from __future__ import annotations

import xml.sax
from dataclasses import dataclass, field
from xml.sax.handler import ContentHandler
from xml.sax.xmlreader import Locator

import defusedxml.sax
from defusedxml import DefusedXmlException

from pvoq.config.errors import ConfigError


@dataclass
class Node:
    tag: str
    line: int
    path: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def all(self, tag: str) -> list[Node]:
        return [c for c in self.children if c.tag == tag]

    def first(self, tag: str) -> Node | None:
        for c in self.children:
            if c.tag == tag:
                return c
        return None

    def require(self, tag: str) -> Node:
        found = self.first(tag)
        if found is None:
            raise ConfigError(f"missing <{tag}> in <{self.tag}>", field=f"{self.path}.{tag}",
                              line=self.line)
        return found

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, field=self.path, line=self.line)


class _Builder(ContentHandler):
    def __init__(self) -> None:
        super().__init__()
        self.root: Node | None = None
        self.stack: list[Node] = []
        self.locator: Locator | None = None

    def setDocumentLocator(self, locator: Locator) -> None:  # SAX API
        self.locator = locator

    def startElement(self, name: str, attrs) -> None:  # SAX API
        line = (self.locator.getLineNumber() or 0) if self.locator else 0
        if self.stack:
            parent = self.stack[-1]
            index = len(parent.all(name))
            path = f"{parent.path}.{name}" if index == 0 else f"{parent.path}.{name}[{index + 1}]"
            node = Node(name, line, path, dict(attrs))
            parent.children.append(node)
        else:
            node = Node(name, line, name, dict(attrs))
            self.root = node
        self.stack.append(node)

    def endElement(self, name: str) -> None:  # SAX API
        self.stack.pop()

    def characters(self, content: str) -> None:
        if self.stack:
            self.stack[-1].parts.append(content)


def parse_xml(data: bytes, *, path: str) -> Node:
    """Parse *data*; a malformed document raises ConfigError with its line."""
    builder = _Builder()
    try:
        defusedxml.sax.parseString(data, builder)
    except xml.sax.SAXParseException as exc:
        raise ConfigError(exc.getMessage(), field="xml", line=exc.getLineNumber(),
                          path=path) from exc
    except DefusedXmlException as exc:
        raise ConfigError(f"refused: {exc}", field="xml", path=path) from exc
    if builder.root is None:
        raise ConfigError("empty document", field="xml", path=path)
    return builder.root
