"""Read `<web>` (`config.web.WebSettings`) from a configuration file."""

from __future__ import annotations

from pathlib import Path

from pvoq.config import convert
from pvoq.config.errors import ConfigError
from pvoq.config.web import WebSettings
from pvoq.config.xmltree import Node


def _file(node: Node, tag: str, base: Path) -> Path | None:
    element = node.first(tag)
    if element is None or not element.text.strip():
        return None
    path = Path(element.text.strip())
    path = (path if path.is_absolute() else base / path).resolve()
    if not path.is_file():
        raise ConfigError(f"file not found: {path}", field=element.path, line=element.line)
    return path


def parse_web(root: Node, base: Path) -> WebSettings:
    """`<web>` of *root* (file names relative to *base*); the defaults without one."""
    node = root.first("web")
    if node is None:
        return WebSettings()
    plain = convert.value(node, "plain_http", convert.boolean, False)
    certificate, key = _file(node, "certificate", base), _file(node, "private_key", base)
    if not plain and (certificate is None or key is None):
        missing = "certificate" if certificate is None else "private_key"
        raise ConfigError("HTTPS needs <certificate> and <private_key> (or <plain_http>true"
                          "</plain_http> to serve without TLS)", field=f"{node.path}.{missing}",
                          line=node.line)
    if plain and (certificate is not None or key is not None):
        raise ConfigError("<plain_http>true</plain_http> serves no certificate: remove "
                          "<certificate> and <private_key>, or plain_http",
                          field=f"{node.path}.plain_http", line=node.line)
    return WebSettings(
        enabled=True,
        address=convert.value(node, "address", convert.ip, "127.0.0.1"),
        port=convert.value(node, "port", convert.port, required=True),
        certificate=certificate, private_key=key, plain_http=plain,
        session_idle_seconds=convert.value(node, "session_idle_seconds", convert.seconds,
                                           1800.0, bounds=(60.0, 86400.0 * 7)),
        session_max_seconds=convert.value(node, "session_max_seconds", convert.seconds,
                                          43200.0, bounds=(60.0, 86400.0 * 30)),
        lockout_failures=convert.value(node, "lockout_failures", convert.positive_int, 5,
                                       bounds=(1, 1000)),
        lockout_seconds=convert.value(node, "lockout_seconds", convert.seconds, 900.0,
                                      bounds=(1.0, 86400.0 * 7)),
        max_body_bytes=convert.value(node, "max_body_bytes", convert.positive_int,
                                     1024 * 1024, bounds=(1024, 2**30)))
