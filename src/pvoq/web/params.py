"""The quarantine search's parameters: one strict parser for the REST API and the console.

AsyncOS's v2.0 names (`quarantines`, `startDate`, `endDate`,
`envelopeSenderFilterBy/Value`, `envelopeRecipientFilterBy/Value`,
`subjectFilterBy/Value`) plus pvoq's own (`reasonFilterBy/Value`,
`attachmentNameFilterBy/Value`, `attachmentSizeMin/Max`, `originatingEsaIp`,
`orderBy`, `orderDir`, `offset`, `limit`). `parse_search` turns them into a
`SearchQuery` and refuses, naming the parameter:

- a name it does not know (a misspelled filter must never widen a search,
  least of all the search a bulk action acts on) and a name given twice;
- a value that is not text where text is expected, longer than
  `MAX_TEXT` characters, or with a NUL;
- a number that is not a whole number in its range (`limit` 1 to
  `MAX_LIMIT`, `offset` 0 to `MAX_OFFSET`, sizes 0 to 2^63-1), a date that
  is neither a time stamp nor ISO 8601 within the years 1 to 9999.

Every refusal is a `ParamError` (an `Invalid`: 400). Pure functions; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pvoq.quarantine.search import MAX_INTEGER, SearchError, SearchQuery, TextFilter

FILTER_BY = {"contains": "contains", "is": "is", "begins_with": "starts_with",
             "starts_with": "starts_with", "ends_with": "ends_with",
             "does_not_contain": "does_not_contain", "is_not": "is_not",
             "does_not_begin_with": "does_not_start_with",
             "does_not_start_with": "does_not_start_with",
             "does_not_end_with": "does_not_end_with"}
ORDER_BY = {"received": "received", "sender": "sender", "subject": "subject",
            "scheduledExit": "scheduled_exit", "scheduled_exit": "scheduled_exit",
            "size": "size"}
TEXT_FILTERS = {  # SearchQuery field: (operator parameter, value parameter)
    "sender": ("envelopeSenderFilterBy", "envelopeSenderFilterValue"),
    "recipient": ("envelopeRecipientFilterBy", "envelopeRecipientFilterValue"),
    "subject": ("subjectFilterBy", "subjectFilterValue"),
    "reason": ("reasonFilterBy", "reasonFilterValue"),
    "attachment_name": ("attachmentNameFilterBy", "attachmentNameFilterValue"),
}
SEARCH_PARAMS: frozenset[str] = frozenset({
    "quarantineType", "quarantines", "startDate", "endDate",
    *(name for pair in TEXT_FILTERS.values() for name in pair),
    "attachmentSizeMin", "attachmentSizeMax", "originatingEsaIp", "originatingEsa",
    "orderBy", "orderDir", "offset", "limit"})
MAX_TEXT = 1000          # characters in one parameter's value
MAX_QUARANTINES = 100    # names in `quarantines`
MAX_LIMIT = 250          # messages on one page
MAX_OFFSET = 100_000     # how deep paging goes; past it, narrow the search
DEFAULT_LIMIT = 20
FIRST_DAY = datetime(1, 1, 2).timestamp()       # a day inside datetime's range, either side
LAST_DAY = datetime(9999, 12, 30).timestamp()


class ParamError(SearchError):
    """A search parameter the caller must correct; `name` is the parameter (400)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class SearchParams:
    """A parsed search: the `SearchQuery`, and the parameters as given (text, for forms
    and links), without the empty ones."""

    query: SearchQuery
    given: dict[str, str]


def _items(params: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    if isinstance(params, Mapping):
        return list(params.items())
    return list(params)


def check_names(params: Mapping[str, Any] | Iterable[tuple[str, Any]],
                allowed: Collection[str]) -> dict[str, Any]:
    """*params* as a dict, refusing a name not in *allowed* and a name given twice."""
    found: dict[str, Any] = {}
    for name, value in _items(params):
        if not isinstance(name, str) or name not in allowed:
            shown = repr(name)[:80]
            raise ParamError(str(name)[:80], f"unknown parameter {shown}; known: "
                                             f"{', '.join(sorted(allowed))}")
        if name in found:
            raise ParamError(name, f"parameter {name} given more than once")
        found[name] = value
    return found


def text(p: Mapping[str, Any], name: str, most: int = MAX_TEXT) -> str | None:
    """Parameter *name* as text (None when absent or empty)."""
    value = p.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ParamError(name, f"{name} must be text, not {_shown(value)}")
    if len(value) > most:
        raise ParamError(name, f"{name} is longer than {most} characters")
    if "\x00" in value:
        raise ParamError(name, f"{name} must not contain a NUL character")
    return value


def integer(p: Mapping[str, Any], name: str, default: int | None, low: int, high: int
            ) -> int | None:
    """Parameter *name* as a whole number from *low* to *high*."""
    value = p.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, str):
        digits = value.strip()
        if digits.isascii() and digits.isdigit() and len(digits) <= 19:
            value = int(digits)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParamError(name, f"{name} must be a whole number from {low} to {high}, "
                               f"not {_shown(value)}")
    return value


def date(p: Mapping[str, Any], name: str) -> float | None:
    """Parameter *name* as epoch seconds: a number, or ISO 8601 (`Z` allowed)."""
    value = p.get(name)
    if value is None or value == "":
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and len(value) <= 64:
        try:
            number = float(value)
        except ValueError:
            try:
                number = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except (ValueError, OverflowError, OSError):
                number = None
    if number is None or not math.isfinite(number) or not FIRST_DAY <= number <= LAST_DAY:
        raise ParamError(name, f"{name} must be a time stamp or an ISO 8601 date in the "
                               f"years 1 to 9999, not {_shown(value)}")
    return number


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."


def _filter(p: Mapping[str, Any], by_name: str, value_name: str) -> TextFilter | None:
    value = text(p, value_name)
    by = text(p, by_name, 40)
    op = FILTER_BY.get(by or "contains")
    if op is None:
        raise ParamError(by_name, f"{by_name}: unknown filter {by!r}; one of "
                                  f"{', '.join(FILTER_BY)}")
    return None if value is None else TextFilter(op, value)


def parse_search(params: Mapping[str, Any] | Iterable[tuple[str, Any]], *,
                 default_limit: int = DEFAULT_LIMIT) -> SearchParams:
    """The search *params* ask for (`ParamError` naming the first wrong parameter)."""
    p = check_names(params, SEARCH_PARAMS)
    kind = text(p, "quarantineType", 20)
    if kind is not None and kind.lower() != "pvo":
        raise ParamError("quarantineType", f"quarantineType must be pvo, not {kind!r}")
    names = tuple(n.strip() for n in (text(p, "quarantines", 40 * MAX_TEXT) or "").split(",")
                  if n.strip())
    if len(names) > MAX_QUARANTINES:
        raise ParamError("quarantines", f"quarantines names more than {MAX_QUARANTINES}")
    order_name = text(p, "orderBy", 40) or "received"
    order = ORDER_BY.get(order_name)
    if order is None:
        raise ParamError("orderBy", f"orderBy: cannot order by {order_name!r}; one of "
                                    f"{', '.join(ORDER_BY)}")
    direction = (text(p, "orderDir", 10) or "desc").lower()
    if direction not in ("asc", "desc"):
        raise ParamError("orderDir", f"orderDir must be asc or desc, not {p['orderDir']!r}")
    gateway = text(p, "originatingEsaIp")
    if gateway is None:
        gateway = text(p, "originatingEsa")
    filters = {field: _filter(p, by, value) for field, (by, value) in TEXT_FILTERS.items()}
    query = SearchQuery(
        quarantines=names, received_from=date(p, "startDate"),
        received_to=date(p, "endDate"),
        sender=filters["sender"], recipient=filters["recipient"],
        subject=filters["subject"], reason=filters["reason"],
        attachment_name=filters["attachment_name"],
        attachment_min_size=integer(p, "attachmentSizeMin", None, 0, MAX_INTEGER),
        attachment_max_size=integer(p, "attachmentSizeMax", None, 0, MAX_INTEGER),
        gateway=gateway, order_by=order, order_dir=direction,
        limit=integer(p, "limit", default_limit, 1, MAX_LIMIT) or default_limit,
        offset=integer(p, "offset", 0, 0, MAX_OFFSET) or 0)
    given = {k: str(v) for k, v in p.items() if v is not None and v != ""}
    return SearchParams(query, given)


OPERATOR_NAME = {"contains": "contains", "is": "is", "starts_with": "begins_with",
                 "ends_with": "ends_with", "does_not_contain": "does_not_contain",
                 "is_not": "is_not", "does_not_start_with": "does_not_begin_with",
                 "does_not_end_with": "does_not_end_with"}
ORDER_NAME = {"received": "received", "sender": "sender", "subject": "subject",
              "scheduled_exit": "scheduledExit", "size": "size"}


def local_time(when: float) -> str:
    """Epoch seconds as the value of an `<input type="datetime-local">` (local time)."""
    return datetime.fromtimestamp(when).strftime("%Y-%m-%dT%H:%M")


def params_of(q: SearchQuery) -> dict[str, str]:
    """The parameters that ask for *q* (a saved search back into the form): the inverse
    of `parse_search` for every filter and the sort, without the paging."""
    p: dict[str, str] = {}
    if q.quarantines:
        p["quarantines"] = ",".join(q.quarantines)
    if q.received_from is not None:
        p["startDate"] = local_time(q.received_from)
    if q.received_to is not None:
        p["endDate"] = local_time(q.received_to)
    for name, (by, value) in TEXT_FILTERS.items():
        flt = getattr(q, name)
        if flt is not None:
            p[by], p[value] = OPERATOR_NAME[flt.op], flt.value
    if q.attachment_min_size is not None:
        p["attachmentSizeMin"] = str(q.attachment_min_size)
    if q.attachment_max_size is not None:
        p["attachmentSizeMax"] = str(q.attachment_max_size)
    if q.gateway:
        p["originatingEsaIp"] = q.gateway
    p["orderBy"], p["orderDir"] = ORDER_NAME[q.order_by], q.order_dir
    return p


__all__ = ["params_of", "local_time", "DEFAULT_LIMIT", "FILTER_BY", "MAX_LIMIT", "MAX_OFFSET", "MAX_TEXT", "ORDER_BY",
           "SEARCH_PARAMS", "ParamError", "SearchParams", "check_names", "date", "integer",
           "parse_search", "text"]
