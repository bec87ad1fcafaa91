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
    fts,
    message_quarantines,
    message_recipients,
    messages,
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


def fts_phrase(value: str, op: str) -> str | None:
    """The FTS5 trigram query matching exactly *op* (contains, starts_with) of *value*.

    None when the trigram index cannot answer exactly (fewer than three
    characters, or another operator).
    """
    if len(value) < 3 or op not in ("contains", "starts_with"):
        return None
    phrase = '"' + value.replace('"', '""') + '"'
    return phrase if op == "contains" else "^" + phrase


def _fts_ids(name: str, query: str) -> Any:
    t = fts[name]
    return select(t.c.rowid).where(text_match(t, query))


def text_match(t: Any, query: str) -> ColumnElement[bool]:
    from sqlalchemy import literal_column

    return literal_column(t.name).op("MATCH")(query)


def fts_prefilter(name: str, flt: TextFilter) -> ColumnElement[bool] | None:
    """SQLite: MIDs whose trigram row contains the value: a superset of the matches."""
    if flt.op in NEGATED:
        return None
    query = fts_phrase(flt.value, "contains")
    return None if query is None else messages.c.id.in_(_fts_ids(name, query))


def _exact_fts(name: str, flt: TextFilter) -> ColumnElement[bool] | None:
    """SQLite: subject and sender contains/starts-with (and negations) answered by FTS."""
    query = fts_phrase(flt.value, NEGATED.get(flt.op, flt.op))
    if query is None:
        return None
    cond = messages.c.id.in_(_fts_ids(name, query))
    return not_(cond) if flt.op in NEGATED else cond


def _sqlite_text(name: str, column: Any, flt: TextFilter) -> list[ColumnElement[bool]]:
    """Conditions for a subject or sender filter on SQLite, using the indexes."""
    exact = _exact_fts(name, flt)
    if exact is not None:
        return [exact]
    op = NEGATED.get(flt.op, flt.op)
    if op == "is" and name == "sender":
        cond = column.collate("NOCASE") == flt.value
        return [not_(cond) if flt.op in NEGATED else cond]
    conds: list[ColumnElement[bool]] = []
    pre = fts_prefilter(name, flt)
    if pre is not None:
        conds.append(pre)
    conds.append(_maybe_not(text_condition(column, flt, "sqlite"), flt))
    return conds


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
    conds: list[ColumnElement[bool]] = [m.state == HELD]
    if q.quarantines:
        # `held` alone is every message some quarantine holds (or, briefly, one
        # whose settlement is about to be claimed).
        conds.append(m.id.in_(select(mq.message_id).where(*held[1:])))
    if q.received_from is not None:
        conds.append(m.received_at >= q.received_from)
    if q.received_to is not None:
        conds.append(m.received_at < q.received_to)
    if dialect == "sqlite":
        for name, col, flt in (("sender", m.sender, q.sender), ("subject", m.subject, q.subject)):
            if flt is not None:
                conds += _sqlite_text(name, col, flt)
        for name, flt in (("recipients", q.recipient), ("reasons", q.reason),
                          ("attachments", q.attachment_name)):
            pre = None if flt is None else fts_prefilter(name, flt)
            if pre is not None and not (name == "reasons" and q.quarantines):
                conds.append(pre)
    else:
        if q.sender is not None:
            conds.append(_maybe_not(text_condition(m.sender, q.sender, dialect), q.sender))
        if q.subject is not None:
            conds.append(_maybe_not(text_condition(m.subject, q.subject, dialect), q.subject))
    if q.recipient is not None:
        r = message_recipients.c
        if dialect == "sqlite" and NEGATED.get(q.recipient.op, q.recipient.op) == "is":
            match: ColumnElement[bool] = r.address.collate("NOCASE") == q.recipient.value
        else:
            match = text_condition(r.address, q.recipient, dialect)
        any_rcpt = m.id.in_(select(r.message_id).where(match))
        conds.append(_maybe_not(any_rcpt, q.recipient))
    if q.reason is not None:
        reason_rows = [mq.state == HELD, text_condition(mq.reason, q.reason, dialect)]
        if q.quarantines:
            reason_rows.append(mq.quarantine.in_(q.quarantines))
        why = m.id.in_(select(mq.message_id).where(*reason_rows))
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


def _sort_key(q: SearchQuery, dialect: str) -> Any:
    m, mq = messages.c, message_quarantines.c
    if q.order_by == "received" and dialect == "sqlite":
        # One manager process writes an embedded database and allocates MIDs in
        # arrival order: MID order is arrival order, and the primary key serves it.
        return m.id
    if q.order_by == "scheduled_exit":
        return (select(func.min(mq.scheduled_exit))
                .where(mq.message_id == m.id, mq.state == HELD).scalar_subquery())
    return {"received": m.received_at, "sender": m.sender, "subject": m.subject,
            "size": m.size}[q.order_by]


def compile_query(q: SearchQuery, dialect: str) -> tuple[Select[Any], Select[Any]]:
    """(the page of MIDs in order, the total count) for *q*."""
    conds = where_clause(q, dialect)
    key = _sort_key(q, dialect)
    direction = (lambda c: c.desc()) if q.order_dir == "desc" else (lambda c: c.asc())
    ids = (select(messages.c.id).where(and_(*conds))
           .order_by(direction(key), direction(messages.c.id))
           .limit(q.limit).offset(q.offset))
    count = select(func.count()).select_from(messages).where(and_(*conds))
    return ids, count


def counter_for(q: SearchQuery) -> str | None:
    """The maintained counter that answers *q*'s total, if one does (pure).

    `*` when nothing is filtered, a quarantine's name when only that one is.
    """
    filtered = (q.received_from, q.received_to, q.sender, q.recipient, q.subject, q.reason,
                q.attachment_name, q.attachment_min_size, q.attachment_max_size, q.gateway)
    if any(f is not None and f != "" for f in filtered) or len(q.quarantines) > 1:
        return None
    return q.quarantines[0] if q.quarantines else "*"


def compile_all_ids(q: SearchQuery, dialect: str) -> Select[Any]:
    """Every matching MID, oldest first (bulk actions)."""
    return (select(messages.c.id).where(and_(*where_clause(q, dialect)))
            .order_by(messages.c.received_at, messages.c.id))


__all__ = ["ALL_OPS", "ORDER_BY", "PAGE_SIZES", "SearchError", "SearchQuery", "TextFilter",
           "compile_all_ids", "compile_query", "like_pattern", "text_condition", "where_clause"]
