"""The bounds of CPQ metadata, and the reader of its JSON objects' fields.

docs/cpq.md, section 5.5: everything a transfer says is bounded, so that what
the manager accepts it can also store, search and release. `Fields` reads
one JSON object's fields against those bounds (`MetadataError` naming the
offending field), remembering the keys it took so that the others are kept
as received; `check_json` bounds the whole value (depth, numbers, Unicode);
`fit_text` cuts what a gateway builds to what a manager accepts. The
transfer kinds themselves are `cpq.transfer`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pvoq.errors import ProtocolError
from pvoq.smtp.limits import MAX_ADDRESS_OCTETS, MAX_RECIPIENTS, address_fault

__all__ = ["MAX_RECIPIENTS"]

# -- limits (docs/cpq.md, "Limits") ----------------------------------------------------
MAX_INT = 2**63 - 1        # MIDs, RIDs, ICIDs, sizes, entries: 0..MAX_INT (64-bit columns)
MAX_ADDRESS = MAX_ADDRESS_OCTETS  # octets of an address, as every listener takes them
MAX_NAME = 255             # hostnames, quarantine names, peers, rules versions
MAX_SHORT = 64             # serials and stage names (the manager's columns are 64 wide)
MAX_TEXT = 2000            # octets of reasons, details, rescan reasons (PostgreSQL indexes
                           # `reasons.text`: a b-tree entry is at most ~2,700 octets)
# MAX_RECIPIENTS: recipients of one message, as every listener takes them
MAX_QUARANTINES = 64       # quarantines one message goes to
MAX_TRACE = 256            # scan_trace steps, and hits/misses of one step
MAX_DEPTH = 32             # nesting of the metadata JSON (the modelled part needs 4)
MAX_SECONDS = 1e12         # times and retentions (seconds; ~31,700 years)


class MetadataError(ProtocolError, ValueError):
    """The metadata of a transfer is missing, malformed or of an unknown version."""



_MISSING = object()


class Fields:
    """Reads the fields of one JSON object, remembering which ones were taken."""

    def __init__(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise MetadataError(f"{where.rstrip('.') or 'metadata'} is not a JSON object")
        self.obj: dict[str, Any] = obj
        self.where = where
        self.taken: set[str] = set()

    def require(self, key: str, kind: type | tuple[type, ...]) -> Any:
        """The value of *key*; MetadataError when it is missing, of another type or
        out of its bounds (`check_bounds`)."""
        value = self.obj.get(key, _MISSING)
        # The common case first: exactly the type asked for (a bool is no int here), and
        # within its bounds when it has any.
        exact = type(value)
        if exact is kind and kind is not float and (kind is not int or 0 <= value <= MAX_INT):
            self.taken.add(key)
            return value
        if value is _MISSING:
            raise MetadataError(f"missing field {self.where}{key}")
        if not is_json_type(value, kind):
            raise MetadataError(f"field {self.where}{key} has the wrong type")
        if type(value) is int or type(value) is float:  # the only values with bounds here
            check_bounds(f"{self.where}{key}", value)
        self.taken.add(key)
        return value

    def text(self, key: str, limit: int, *, optional: bool = False) -> Any:
        """A string field of at most *limit* characters, without NUL (None when optional
        and absent)."""
        value = self.optional(key, str) if optional else self.require(key, str)
        if value is not None and len(value) > limit:
            raise MetadataError(f"field {self.where}{key} is longer than {limit} characters")
        return self.no_nul(key, value)

    def prose(self, key: str, *, optional: bool = False) -> Any:
        """A free text field of at most MAX_TEXT octets of UTF-8 (see `fit_text`), without
        NUL."""
        value = self.optional(key, str) if optional else self.require(key, str)
        if value is not None and len(value) > MAX_TEXT // 4 and len(
                value.encode("utf-8", "surrogatepass")) > MAX_TEXT:
            raise MetadataError(f"field {self.where}{key} is longer than {MAX_TEXT} octets")
        return self.no_nul(key, value)

    def no_nul(self, key: str, value: Any) -> Any:
        """*value*, unless it is a string holding a NUL: a text the manager stores in a
        column of its own, which PostgreSQL's text refuses (its whole batch would fail,
        and again at every retry)."""
        if isinstance(value, str) and "\x00" in value:
            raise MetadataError(f"field {self.where}{key} holds a NUL character")
        return value

    def address(self, key: str, *, empty: bool = False) -> str:
        """An address (RFC 5321 lengths); the empty reverse-path only when *empty*."""
        value: str = self.require(key, str)
        name = f"{self.where}{key}"
        if not value:
            if empty:
                return value
            raise MetadataError(f"field {name} is empty")
        fault = address_fault(value)  # what every SMTP listener refuses
        if fault is not None:
            raise MetadataError(f"field {name} {fault}")
        return value

    def items(self, key: str, limit: int) -> list[Any]:
        """A list field of at most *limit* items."""
        value: list[Any] = self.require(key, list)
        if len(value) > limit:
            raise MetadataError(f"field {self.where}{key} has more than {limit} items")
        return value

    def optional(self, key: str, kind: type | tuple[type, ...]) -> Any:
        """The value of *key* when present and of *kind*; None otherwise (then kept in extra)."""
        if key in self.obj and is_json_type(self.obj[key], kind):
            check_bounds(f"{self.where}{key}", self.obj[key])
            self.taken.add(key)
            return self.obj[key]
        return None

    def extra(self) -> dict[str, Any]:
        """The keys not taken, as received."""
        if len(self.taken) == len(self.obj):  # every key taken (each is one of obj's)
            return {}
        return {k: v for k, v in self.obj.items() if k not in self.taken}


def check_bounds(name: str, value: Any) -> None:
    """Integers within 0..MAX_INT, numbers finite and within MAX_SECONDS."""
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not 0 <= value <= MAX_INT:
        raise MetadataError(f"field {name} is out of range (0 to {MAX_INT})")
    if isinstance(value, float) and not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        raise MetadataError(f"field {name} is out of range (a finite number, "
                            f"0 to {MAX_SECONDS:.0f})")


def check_json(obj: Any) -> None:
    """MetadataError unless *obj* (a decoded JSON value) is at most MAX_DEPTH deep, every
    number in it finite, every integer within 64 bits and every string (keys included)
    Unicode text, without a lone surrogate (`\\ud800` in the JSON): what SQLite's
    `json_extract`, PostgreSQL's `jsonb` and their text columns take. Iterative: any
    depth costs no recursion. A first pass names no field and looks no further than
    ASCII text and 64-bit numbers (every transfer a pvoq gateway sends); only what it
    cannot pass is gone through again, field by field, for the error or to pass it."""
    if not _plainly_bounded(obj):
        _check_field_by_field(obj)


def _check_field_by_field(obj: Any) -> None:
    """`check_json`'s whole rule, naming the field at fault."""
    stack: list[tuple[Any, int, str]] = [(obj, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise MetadataError(f"metadata is nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for k in value:
                    check_unicode(path or "metadata", k, "has a key that is")
                stack.extend((v, depth + 1, f"{path}.{k}" if path else str(k))
                             for k, v in value.items())
            else:
                stack.extend((v, depth + 1, f"{path}[]") for v in value)
        elif isinstance(value, str):
            check_unicode(path or "metadata", value, "is")
        elif isinstance(value, float) and not math.isfinite(value):
            raise MetadataError(f"field {path or 'metadata'} is not a finite number")
        elif (isinstance(value, int) and not isinstance(value, bool)
              and not -MAX_INT - 1 <= value <= MAX_INT):
            raise MetadataError(f"field {path or 'metadata'} is out of range (64 bits)")


def _plainly_bounded(obj: Any) -> bool:
    """Whether *obj* is within `check_json`'s bounds with every string (keys too) ASCII:
    True only when certain (False sends it to the field-by-field pass). Walked a level
    of nesting at a time."""
    level: list[Any] = [obj]
    depth = 1
    while level:
        below: list[Any] = []
        for value in level:
            kind = type(value)
            if kind is dict:
                try:
                    keys = "".join(value)  # TypeError: a key that is no string
                except TypeError:
                    return False
                if depth > MAX_DEPTH or not keys.isascii():
                    return False
                below.extend(value.values())
            elif kind is list:
                if depth > MAX_DEPTH:
                    return False
                below.extend(value)
            elif kind is str:
                if not value.isascii():
                    return False
            elif kind is float:
                if not math.isfinite(value):
                    return False
            elif kind is int:
                if not -MAX_INT - 1 <= value <= MAX_INT:
                    return False
            elif value is not None and kind is not bool:
                return False
        level = below
        depth += 1
    return True


def check_unicode(name: str, text: str, what: str) -> None:
    """MetadataError if *text* holds a lone surrogate (it has no UTF-8 form)."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        name = name.encode("ascii", "backslashreplace").decode("ascii")
        raise MetadataError(f"field {name} {what} not Unicode text (a lone surrogate)"
                            ) from None


def without_nul(text: str) -> str:
    """*text* with each NUL made U+FFFD. PostgreSQL's text takes no NUL: what a gateway
    builds (`fit_text`) and what a held message brings itself (its Subject, its
    attachments' names, `quarantine.arrivals`) are stored without one."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def fit_text(text: str, limit: int = MAX_TEXT) -> str:
    """*text* cut to at most *limit* octets of UTF-8 (on a character boundary, with "..."),
    each NUL made U+FFFD.

    What a gateway builds (`QuarantineRef`, `RescanNotice`) goes through this, so that an
    anti-virus verdict naming hundreds of viruses or a long filter source still makes a
    transfer the manager accepts: the manager refuses what is longer, or holds a NUL,
    never cuts or mends it.
    """
    text = without_nul(text)
    if len(text) <= limit // 4:
        return text
    octets = text.encode("utf-8", "surrogatepass")
    if len(octets) <= limit:
        return text
    return octets[:limit - 3].decode("utf-8", "ignore") + "..."


def is_json_type(value: Any, kind: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and kind is not bool:  # JSON true is not a number
        return False
    return isinstance(value, kind)


def with_extra(known: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        known.setdefault(key, value)
    return known


def with_optional(known: dict[str, Any], **values: Any) -> dict[str, Any]:
    """*known* with those of *values* that are not None added."""
    known.update((k, v) for k, v in values.items() if v is not None)
    return known
