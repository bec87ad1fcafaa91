"""Quarantine search: a `SearchQuery` value compiled to SQL statements.

The filters of AsyncOS's PVO search (quarantines, received range, envelope
sender, envelope recipient and subject with contains / starts with / ends
with / is and their negations, attachment name and size, originating
gateway) plus the reason itself (virus name, outbreak rule, filter name);
sorted by sender, subject, received, scheduled exit or size; paged.

Only held messages are found. Text matches ignore case: `LIKE` on SQLite
(case-insensitive for ASCII), `lower(col) LIKE lower(pattern)` on PostgreSQL
where trigram indexes on `lower(col)` serve them.

`compile_query` is a pure function of the query and the dialect name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, not_, select

from pvoq.quarantine.schema import (
    attachments,
    message_quarantines,
    message_recipients,
    messages,
    search_text,
)

HELD = "held"
TEXT_OPS = ("contains", "starts_with", "ends_with", "is")
NEGATED = {"does_not_contain": "contains", "does_not_start_with": "starts_with",
           "does_not_end_with": "ends_with", "is_not": "is"}
ALL_OPS = (*TEXT_OPS, *NEGATED)
ORDER_BY = ("received", "sender", "subject", "scheduled_exit", "size")
PAGE_SIZES = (20, 50, 100, 250)


class SearchError(ValueError):
    """A search the operator must correct (unknown operator, sort key, page size)."""


@dataclass(frozen=True)
class TextFilter:
    """`op` one of contains/starts_with/ends_with/is or does_not_contain/... /is_not."""

    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in ALL_OPS:
            raise SearchError(f"unknown text operator {self.op!r}; one of {', '.join(ALL_OPS)}")


@dataclass(frozen=True)
class SearchQuery:
    quarantines: tuple[str, ...] = ()          # empty: every quarantine
    received_from: float | None = None
    received_to: float | None = None
    sender: TextFilter | None = None
    recipient: TextFilter | None = None
    subject: TextFilter | None = None
    reason: TextFilter | None = None
    attachment_name: TextFilter | None = None
    attachment_min_size: int | None = None
    attachment_max_size: int | None = None
    gateway: str | None = None                 # hostname or IP of the originating gateway
    order_by: str = "received"
    order_dir: str = "desc"
    limit: int = 100
    offset: int = 0
    with_total: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.order_by not in ORDER_BY:
            raise SearchError(f"cannot sort by {self.order_by!r}; one of {', '.join(ORDER_BY)}")
        if self.order_dir not in ("asc", "desc"):
            raise SearchError(f"order direction must be asc or desc, not {self.order_dir!r}")
        if self.limit < 1 or self.offset < 0:
            raise SearchError("limit must be positive and offset not negative")

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("extra", None)
        return json.dumps(data, sort_keys=True)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> SearchQuery:
        values = dict(data)
        for key in ("sender", "recipient", "subject", "reason", "attachment_name"):
            v = values.get(key)
            if isinstance(v, dict):
                values[key] = TextFilter(v["op"], v["value"])
            elif isinstance(v, (list, tuple)):
                values[key] = TextFilter(v[0], v[1])
        if "quarantines" in values:
            values["quarantines"] = tuple(values["quarantines"] or ())
        values.pop("extra", None)
        return SearchQuery(**values)

    @staticmethod
    def from_json(raw: str) -> SearchQuery:
        return SearchQuery.from_dict(json.loads(raw))

    def page(self, limit: int, offset: int) -> SearchQuery:
        return replace(self, limit=limit, offset=offset)


def like_pattern(op: str, value: str) -> str:
    """The LIKE pattern (escape `\\`) for a positive text operator."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"contains": f"%{escaped}%", "starts_with": f"{escaped}%",
            "ends_with": f"%{escaped}", "is": escaped}[op]


def text_condition(column: Any, flt: TextFilter, dialect: str) -> ColumnElement[bool]:
    """A case-insensitive condition for *flt* on *column* (positive form)."""
    op = NEGATED.get(flt.op, flt.op)
    pattern = like_pattern(op, flt.value)
    if dialect == "sqlite":
        return column.like(pattern, escape="\\")
    return func.lower(column).like(pattern.lower(), escape="\\")


def fts_prefilter(column_name: str, flt: TextFilter) -> ColumnElement[bool] | None:
    """SQLite: MIDs whose trigram index row contains the value (a superset of the matches).

    Only for positive operators with at least three characters and no LIKE
    wildcards in the value (the trigram index cannot serve anything else).
    """
    if flt.op in NEGATED or len(flt.value) < 3 or any(c in flt.value for c in "%_\\"):
        return None
    col = search_text.c[column_name]
    return messages.c.id.in_(select(search_text.c.rowid).where(col.like(f"%{flt.value}%")))


def _negated(flt: TextFilter) -> bool:
    return flt.op in NEGATED


def _maybe_not(cond: ColumnElement[bool], flt: TextFilter) -> ColumnElement[bool]:
    return not_(cond) if _negated(flt) else cond


def where_clause(q: SearchQuery, dialect: str) -> list[ColumnElement[bool]]:
    """The conditions on `messages` that select the held messages *q* asks for."""
    m, mq = messages.c, message_quarantines.c
    held = [mq.message_id == m.id, mq.state == HELD]
    if q.quarantines:
        held.append(mq.quarantine.in_(q.quarantines))
    conds: list[ColumnElement[bool]] = [m.state == HELD, exists().where(*held)]
    if q.received_from is not None:
        conds.append(m.received_at >= q.received_from)
    if q.received_to is not None:
        conds.append(m.received_at < q.received_to)
    if dialect == "sqlite":
        for name, flt in (("sender", q.sender), ("subject", q.subject),
                          ("recipients", q.recipient), ("reasons", q.reason),
                          ("attachments", q.attachment_name)):
            pre = None if flt is None else fts_prefilter(name, flt)
            if pre is not None:
                conds.append(pre)
    if q.sender is not None:
        conds.append(_maybe_not(text_condition(m.sender, q.sender, dialect), q.sender))
    if q.subject is not None:
        conds.append(_maybe_not(text_condition(m.subject, q.subject, dialect), q.subject))
    if q.recipient is not None:
        r = message_recipients.c
        any_rcpt = exists().where(r.message_id == m.id,
                                  text_condition(r.address, q.recipient, dialect))
        conds.append(_maybe_not(any_rcpt, q.recipient))
    if q.reason is not None:
        why = exists().where(*held, text_condition(mq.reason, q.reason, dialect))
        conds.append(_maybe_not(why, q.reason))
    if (q.attachment_name is not None or q.attachment_min_size is not None
            or q.attachment_max_size is not None):
        a = attachments.c
        acond: list[ColumnElement[bool]] = [a.message_id == m.id]
        if q.attachment_name is not None and not _negated(q.attachment_name):
            acond.append(text_condition(a.name, q.attachment_name, dialect))
        if q.attachment_min_size is not None:
            acond.append(a.size >= q.attachment_min_size)
        if q.attachment_max_size is not None:
            acond.append(a.size <= q.attachment_max_size)
        conds.append(exists().where(*acond))
        if q.attachment_name is not None and _negated(q.attachment_name):
            conds.append(not_(exists().where(
                a.message_id == m.id, text_condition(a.name, q.attachment_name, dialect))))
    if q.gateway:
        conds.append((func.lower(m.origin_host) == q.gateway.lower())
                     | (m.origin_ip == q.gateway))
    return conds


def _sort_key(q: SearchQuery) -> Any:
    m, mq = messages.c, message_quarantines.c
    if q.order_by == "scheduled_exit":
        return (select(func.min(mq.scheduled_exit))
                .where(mq.message_id == m.id, mq.state == HELD).scalar_subquery())
    return {"received": m.received_at, "sender": m.sender, "subject": m.subject,
            "size": m.size}[q.order_by]


def compile_query(q: SearchQuery, dialect: str) -> tuple[Select[Any], Select[Any]]:
    """(the page of MIDs in order, the total count) for *q*."""
    conds = where_clause(q, dialect)
    key = _sort_key(q)
    direction = (lambda c: c.desc()) if q.order_dir == "desc" else (lambda c: c.asc())
    ids = (select(messages.c.id).where(and_(*conds))
           .order_by(direction(key), direction(messages.c.id))
           .limit(q.limit).offset(q.offset))
    count = select(func.count()).select_from(messages).where(and_(*conds))
    return ids, count


def compile_all_ids(q: SearchQuery, dialect: str) -> Select[Any]:
    """Every matching MID, oldest first (bulk actions)."""
    return (select(messages.c.id).where(and_(*where_clause(q, dialect)))
            .order_by(messages.c.received_at, messages.c.id))


__all__ = ["ALL_OPS", "ORDER_BY", "PAGE_SIZES", "SearchError", "SearchQuery", "TextFilter",
           "compile_all_ids", "compile_query", "like_pattern", "text_condition", "where_clause"]
