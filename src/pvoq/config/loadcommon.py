"""What the configuration readers share: file paths relative to the file, interface references."""

from __future__ import annotations

from pathlib import Path

from pvoq.config.errors import ConfigError
from pvoq.config.model import Interface
from pvoq.config.xmltree import Node


def file_path(parent: Node, tag: str, base: Path, *, must_exist: bool = True) -> Path:
    """The path in *parent*'s element *tag*, relative to *base* (the file's directory);
    `ConfigError` naming the element when it is empty or, with *must_exist*, missing."""
    node = parent.require(tag)
    raw = node.text.strip()
    if not raw:
        raise node.error("empty path")
    p = Path(raw)
    p = p if p.is_absolute() else (base / p)
    if must_exist and not p.exists():
        raise ConfigError(f"file not found: {p}", field=node.path, line=node.line)
    return p.resolve()


def check_interface(node: Node, name: str, interfaces: tuple[Interface, ...]) -> None:
    """`ConfigError` naming *node*'s `interface_name` when no interface is called *name*."""
    if not any(i.name == name for i in interfaces):
        where = node.first("interface_name") or node
        known = ", ".join(repr(i.name) for i in interfaces)
        raise ConfigError(f"no interface named {name!r} (known: {known})",
                          field=where.path, line=where.line)
