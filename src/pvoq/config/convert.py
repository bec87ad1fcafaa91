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
import re
from collections.abc import Callable
from dataclasses import MISSING
from typing import Any, TypeVar

from pvoq.config.errors import ConfigError
from pvoq.config.model import PORTS, Route, file_default, model_default, value_range, xml_tag
from pvoq.config.xmltree import Node

T = TypeVar("T")
S = TypeVar("S", bound=str)

TRUE_WORDS = {"true", "yes", "on", "1", "enabled"}
FALSE_WORDS = {"false", "no", "off", "0", "disabled"}


def text(node: Node | None) -> str | None:
    return None if node is None else node.text.strip()


def show_number(number: float) -> str:
    """*number* as the documentation and the errors write it (`65535`, `0.01`, `1e+09`)."""
    return str(int(number)) if float(number).is_integer() and abs(number) < 1e15 else f"{number:g}"


def describe_range(bounds: tuple[float, float]) -> str:
    """`from 1 to 65535`: the range the errors and the README name."""
    return f"from {show_number(bounds[0])} to {show_number(bounds[1])}"


def in_range(number: Any, bounds: tuple[float, float] | None) -> None:
    """Raise ValueError naming *bounds* unless *number* is finite and within them."""
    if bounds is None or number is None:
        return
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError("not a finite number")
    if not bounds[0] <= number <= bounds[1]:
        raise ValueError("out of range")


def value(parent: Node, tag: str, convert: Callable[[str], T], default: T | None = None,
           *, required: bool = False, bounds: tuple[float, float] | None = None) -> T:
    """The element *tag* of *parent*, converted; *bounds*: the range a number must be in."""
    node = parent.first(tag)
    if node is None or not node.text.strip():
        if required:
            raise ConfigError(f"missing <{tag}>", field=f"{parent.path}.{tag}",
                              line=(node or parent).line)
        return default  # type: ignore[return-value]
    raw = node.text.strip()
    try:
        result = convert(raw)
        in_range(result, bounds)
        return result
    except (ValueError, TypeError, OverflowError) as exc:
        why = str(exc) or "invalid value"
        if bounds is not None and describe_range(bounds) not in why:
            why += f" (a finite number {describe_range(bounds)})"
        raise ConfigError(f"{why}: {_shown(raw)}", field=node.path, line=node.line) from None


def _shown(raw: str) -> str:
    """*raw* for an error line: quoted, and cut when long (a value may be megabytes)."""
    return repr(raw) if len(raw) <= 80 else f"{raw[:80]!r}... ({len(raw)} characters)"


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
        bounds = value_range(self.owner, name)
        if default is MISSING:
            return value(parent, tag, convert, required=True, bounds=bounds)
        return value(parent, tag, convert, default, bounds=bounds)


def _digits(raw: str) -> bool:
    """ASCII digits only (`str.isdigit` also admits `²` and other scripts' digits)."""
    return raw.isascii() and raw.isdigit()


def port(raw: str) -> int:
    number = int(raw) if _digits(raw) and len(raw) <= 5 else -1
    if not 1 <= number <= 65535:
        raise ValueError(f"not a port number ({describe_range(PORTS)})")
    return number


def positive_int(raw: str) -> int:
    if not _digits(raw) or len(raw) > 30 or int(raw) <= 0:
        raise ValueError("not a positive integer")
    return int(raw)


def finite(raw: str) -> float:
    """A finite decimal number: no nan, inf, 1e400 (which is inf) or `1_0`."""
    if "_" in raw:
        raise ValueError("not a number")
    number = float(raw)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def non_negative(raw: str) -> float:
    number = finite(raw)
    if number < 0:
        raise ValueError("not a non-negative number")
    return number


def seconds(raw: str) -> float:
    number = finite(raw)
    if number <= 0:
        raise ValueError("not a positive number of seconds")
    return number


def limit_seconds(raw: str) -> float:
    """A time limit: a finite, positive number of seconds (no nan, inf or 1e400)."""
    number = finite(raw)
    if number <= 0:
        raise ValueError("not a finite, positive number of seconds")
    return number


def boolean(raw: str) -> bool:
    if raw.lower() in TRUE_WORDS:
        return True
    if raw.lower() in FALSE_WORDS:
        return False
    raise ValueError("not a boolean (true/false)")


_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def hostname(raw: str) -> str:
    """A DNS name (`gw1.example.com`): labels of letters, digits, `-` and `_`, at most 253."""
    name = raw[:-1] if raw.endswith(".") else raw
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(x) for x in name.split(".")):
        raise ValueError("not a host name (labels of letters, digits and '-', at most 253 "
                         "characters)")
    return raw


def host(raw: str) -> str:
    """A host name or an IP address."""
    try:
        return ip(raw)
    except ValueError:
        return hostname(raw)


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
