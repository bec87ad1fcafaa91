"""Reading one configuration value: the converters and the model-driven field reader.

`value` reads one element under a section and converts it, naming the
element's path and line in the `ConfigError` a bad value gives; `Fields`
reads the fields of a model class (`config.model`) with their defaults taken
from the model, once; the converters (`port`, `seconds`, `choice`...) turn
the element's text into the value or raise ValueError with what was wrong.
`config.loader` builds the whole configuration with them.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any, TypeVar

from pvoq.config.errors import ConfigError
from pvoq.config.model import Route, file_default, model_default, xml_tag
from pvoq.config.xmltree import Node

T = TypeVar("T")
S = TypeVar("S", bound=str)

TRUE_WORDS = {"true", "yes", "on", "1", "enabled"}
FALSE_WORDS = {"false", "no", "off", "0", "disabled"}


def text(node: Node | None) -> str | None:
    return None if node is None else node.text.strip()


def value(parent: Node, tag: str, convert: Callable[[str], T], default: T | None = None,
           *, required: bool = False) -> T:
    node = parent.first(tag)
    if node is None or not node.text.strip():
        if required:
            raise ConfigError(f"missing <{tag}>", field=f"{parent.path}.{tag}",
                              line=(node or parent).line)
        return default  # type: ignore[return-value]
    raw = node.text.strip()
    try:
        return convert(raw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{exc}: {raw!r}" if str(exc) else f"invalid value {raw!r}",
                          field=node.path, line=node.line) from None


FROM_MODEL: Any = object()


class Fields:
    """The fields of the model class *owner*, read from the section *node*.

    A field is read from its element (`xml_tag`); an element left out gives
    `file_default`, and a section not written at all (*node* None, or a
    level of the tag's path missing) the field's default in code.
    """

    def __init__(self, node: Node | None, owner: type) -> None:
        self.node = node
        self.owner = owner

    def __call__(self, name: str, convert: Callable[[str], T], *,
                 default: Any = FROM_MODEL) -> T:
        """Field *name*, converted by *convert*; *default* when it depends on other values."""
        *levels, tag = xml_tag(self.owner, name).split("/")
        parent = self.node
        for level in levels:
            parent = None if parent is None else parent.first(level)
        if parent is None:
            found = model_default(self.owner, name)
            if found is MISSING:
                raise TypeError(f"{self.owner.__name__}.{name} has no default")
            return found
        if default is FROM_MODEL:
            default = file_default(self.owner, name)
        if default is MISSING:
            return value(parent, tag, convert, required=True)
        return value(parent, tag, convert, default)


def port(raw: str) -> int:
    number = int(raw) if raw.isdigit() else -1
    if not 1 <= number <= 65535:
        raise ValueError("not a port number (1-65535)")
    return number


def positive_int(raw: str) -> int:
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError("not a positive integer")
    return int(raw)


def non_negative(raw: str) -> float:
    number = float(raw)
    if number < 0:
        raise ValueError("not a non-negative number")
    return number


def seconds(raw: str) -> float:
    number = float(raw)
    if number <= 0:
        raise ValueError("not a positive number of seconds")
    return number


def limit_seconds(raw: str) -> float:
    """A time limit: a finite, positive number of seconds (no nan, inf or 1e400)."""
    number = float(raw)
    if not math.isfinite(number) or number <= 0:
        raise ValueError("not a finite, positive number of seconds")
    return number


def boolean(raw: str) -> bool:
    if raw.lower() in TRUE_WORDS:
        return True
    if raw.lower() in FALSE_WORDS:
        return False
    raise ValueError("not a boolean (true/false)")


def ip(raw: str) -> str:
    return str(ipaddress.ip_address(raw))


def choice(*choices: S) -> Callable[[str], S]:
    """A converter to one of *choices* (strings or a StrEnum's members), matched without case."""
    def convert(raw: str) -> S:
        for c in choices:
            if raw.lower() == c.lower():
                return c
        raise ValueError(f"must be one of {', '.join(choices)}")
    return convert


def host_port(raw: str) -> tuple[str, int]:
    host, sep, number = raw.rpartition(":")
    if not sep:
        return raw, Route.port
    return host.strip("[]"), port(number)
