"""Quarantine search: a `SearchQuery` value compiled to SQL statements.

The filters of AsyncOS's PVO search (quarantines, received range, envelope
sender, envelope recipient and subject with contains / starts with / ends
with / is and their negations, attachment name and size, originating
gateway) plus the reason itself (virus name, outbreak rule, filter name);
sorted by sender, subject, received, scheduled exit or size; paged.

Only held messages are found. Text matches ignore case: `LIKE` on SQLite
(case-insensitive for ASCII), `lower(col) LIKE lower(pattern)` on PostgreSQL
where trigram indexes on `lower(col)` serve them.

Totals are bounded: a search counts its matches up to `TOTAL_CAP` (10,000)
and above it says "more than 10,000" (`SearchResult.exact` false), so a
common word among ten million messages is not counted match by match. The
totals answered by the maintained counters (everything held, one quarantine)
stay exact.

`compile_query` is a pure function of the query and the dialect name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    any_,
    func,
    intersect,
    literal_column,
    not_,
    select,
    true,
)

from pvoq.errors import Invalid
from pvoq.quarantine.schema import (
    attachments,
    fts,
    message_quarantines,
    message_recipients,
    messages,
    reasons,
)
from pvoq.quarantine.states import State
from pvoq.quarantine.words import WordSet

HELD = State.HELD
TEXT_OPS = ("contains", "starts_with", "ends_with", "is")
NEGATED = {"does_not_contain": "contains", "does_not_start_with": "starts_with",
           "does_not_end_with": "ends_with", "is_not": "is"}
ALL_OPS = (*TEXT_OPS, *NEGATED)
MAX_INTEGER = 2**63 - 1                        # the database's integers are 64-bit signed
ORDER_BY = ("received", "sender", "subject", "scheduled_exit", "size")
PAGE_SIZES = (20, 50, 100, 250)
TOTAL_CAP = 10_000      # a filtered search counts its matches up to here ("more than")


class SearchResult(NamedTuple):
    """A page of held messages and how many match: exactly, or at least `total`.

    `exact` false means more than `total` match (the count stopped at the cap).
    """

    rows: list[dict[str, Any]]
    total: int
    exact: bool = True


def describe_total(total: int, exact: bool) -> str:
    """"1,234" or "more than 10,000": a total as the console and the CLI show it."""
    return f"{total:,}" if exact else f"more than {total:,}"


class SearchError(Invalid, ValueError):
    """A search the operator must correct (unknown operator, sort key, page size)."""


@dataclass(frozen=True)
class TextFilter:
    """`op` one of contains/starts_with/ends_with/is or does_not_contain/... /is_not."""

    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in ALL_OPS:
            raise SearchError(f"unknown text operator {self.op!r}; one of {', '.join(ALL_OPS)}")
        _check_text("filter value", self.value)


def _check_text(what: str, value: object) -> None:
    """A value every database can compare: a string without NUL."""
    if not isinstance(value, str):
        raise SearchError(f"{what} must be text, not {type(value).__name__}")
    if "\x00" in value:
        raise SearchError(f"{what} must not contain a NUL character")


def _check_integer(what: str, value: object, low: int | None) -> None:
    """A whole number the database can hold, at least *low* (None: type only)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SearchError(f"{what} must be a whole number, not {value!r}")
    if low is not None and not low <= value <= MAX_INTEGER:
        raise SearchError(f"{what} must be between {low} and {MAX_INTEGER}")


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
        _check_integer("limit", self.limit, None)
        _check_integer("offset", self.offset, None)
        if self.limit < 1 or self.offset < 0:
            raise SearchError("limit must be positive and offset not negative")
        for what, number, low in (("limit", self.limit, 1), ("offset", self.offset, 0),
                                  ("attachment minimum size", self.attachment_min_size, 0),
                                  ("attachment maximum size", self.attachment_max_size, 0)):
            if number is not None:
                _check_integer(what, number, low)
        for name in self.quarantines:
            _check_text("quarantine name", name)
        if self.gateway is not None:
            _check_text("gateway", self.gateway)
        for when in (self.received_from, self.received_to):
            if when is not None and (isinstance(when, bool) or not isinstance(when, int | float)
                                     or not math.isfinite(when)):
                raise SearchError(f"a date must be a finite time stamp, not {when!r}")

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


def _fts_ids(name: str, query: str) -> Select[Any]:
    t = fts[name]
    return select(t.c.rowid).where(literal_column(t.name).op("MATCH")(query))


def _negated(flt: TextFilter) -> bool:
    return flt.op in NEGATED


def _maybe_not(cond: ColumnElement[bool], flt: TextFilter) -> ColumnElement[bool]:
    return not_(cond) if _negated(flt) else cond


def _reversed_suffix(column: Any, value: str, dialect: str) -> ColumnElement[bool]:
    """`ends with value` as a prefix of a lowercased, reversed column (B-tree friendly):
    a range on SQLite, `LIKE 'prefix%'` on PostgreSQL (text_pattern_ops index)."""
    low = value.lower()[::-1]
    if dialect == "sqlite":
        return and_(column >= low, column < low + "\U0010ffff")
    return column.like(like_pattern("starts_with", low), escape="\\")


@dataclass
class Plan:
    """A search as conditions on `messages` rows plus sets of MIDs to intersect.

    Every set holds held messages only (held quarantine rows, or the search
    tables, from which a message leaves when its settlement is claimed), so
    with at least one set the `state = 'held'` test is implied.
    """

    rows: list[ColumnElement[bool]] = field(default_factory=list)
    sets: list[Select[Any]] = field(default_factory=list)
    unique: list[bool] = field(default_factory=list)   # per set: no MID twice

    held_rows: list[ColumnElement[bool]] | None = None  # one quarantine's held rows, if any
    held_set: int | None = None                        # ... and which set they are
    held_reasons: Select[Any] | None = None            # ... of these reasons only

    def held(self, walk: bool) -> list[ColumnElement[bool]]:
        """The held rows' conditions; *walk*: the reasons as a filter (PostgreSQL), so
        the received-time index is walked to a page instead of sorting every match."""
        assert self.held_rows is not None
        if self.held_reasons is None:
            return self.held_rows
        rid = message_quarantines.c.reason_id
        reason = (rid == any_(func.array(self.held_reasons.scalar_subquery())) if walk
                  else rid.in_(self.held_reasons))
        return [reason, *self.held_rows]

    def add(self, ids: Select[Any], unique: bool) -> None:
        self.sets.append(ids)
        self.unique.append(unique)


Words = Mapping[str, WordSet]  # filter name (sender, recipient, subject) → its words


def plan(q: SearchQuery, dialect: str, words: Words | None = None) -> Plan:
    """How to find what *q* asks for on *dialect* (a pure function); *words*: the
    distinct words (PostgreSQL's `search_words`) that answer some of its text filters."""
    m, mq = messages.c, message_quarantines.c
    r, a = message_recipients.c, attachments.c
    lite = dialect == "sqlite"
    p = Plan()
    one_quarantine = len(q.quarantines) == 1
    if q.quarantines and (q.reason is None or _negated(q.reason)):
        # (a positive reason filter is restricted to these quarantines itself)
        p.add(select(mq.message_id).where(mq.quarantine.in_(q.quarantines), mq.state == HELD),
              one_quarantine)
        if one_quarantine:
            p.held_rows = [mq.quarantine == q.quarantines[0], mq.state == HELD]
            p.held_set = len(p.sets) - 1
    if q.received_from is not None:
        p.rows.append(m.received_at >= q.received_from)
    if q.received_to is not None:
        p.rows.append(m.received_at < q.received_to)
    for name, column, flt in (("sender", m.sender, q.sender), ("subject", m.subject, q.subject)):
        if flt is None:
            continue
        if words and name in words and not _negated(flt):
            p.add(words[name].ids(), words[name].unique)
            continue
        op = NEGATED.get(flt.op, flt.op)
        phrase = fts_phrase(flt.value, op) if lite else None
        if phrase is not None and not _negated(flt):
            p.add(_fts_ids(name, phrase), True)
        elif phrase is not None:
            p.rows.append(m.id.not_in(_fts_ids(name, phrase)))
        elif name == "sender" and op == "is":
            same = (column.collate("NOCASE") == flt.value if lite
                    else func.lower(column) == flt.value.lower())
            p.rows.append(_maybe_not(same, flt))
        elif name == "sender" and op == "ends_with":
            p.rows.append(_maybe_not(_reversed_suffix(m.sender_rev, flt.value, dialect), flt))
        else:
            p.rows.append(_maybe_not(text_condition(column, flt, dialect), flt))
    if q.recipient is not None and words and "recipient" in words \
            and not _negated(q.recipient):
        p.add(words["recipient"].ids(), words["recipient"].unique)
    elif q.recipient is not None:
        op = NEGATED.get(q.recipient.op, q.recipient.op)
        if lite and op == "is":
            match: ColumnElement[bool] = r.address.collate("NOCASE") == q.recipient.value
        elif op == "is":
            match = func.lower(r.address) == q.recipient.value.lower()
        else:
            match = text_condition(r.address, q.recipient, dialect)
        rcpt = select(r.message_id).where(match)
        phrase = fts_phrase(q.recipient.value, "contains") if lite and op != "is" else None
        if phrase is not None:
            rcpt = rcpt.where(r.message_id.in_(_fts_ids("recipients", phrase)))
        if _negated(q.recipient):
            p.rows.append(m.id.not_in(rcpt))
        else:
            p.add(rcpt, False)
    if q.reason is not None:
        ids = select(reasons.c.id).where(
            text_condition(reasons.c.text, TextFilter(NEGATED.get(q.reason.op, q.reason.op),
                                                      q.reason.value), dialect))
        why = select(mq.message_id).where(mq.reason_id.in_(ids), mq.state == HELD)
        if q.quarantines:
            why = why.where(mq.quarantine.in_(q.quarantines))
        if _negated(q.reason):
            p.rows.append(m.id.not_in(why))
        else:
            p.add(why, one_quarantine)
            if one_quarantine:
                p.held_rows = [mq.state == HELD, mq.quarantine == q.quarantines[0]]
                p.held_reasons = ids
                p.held_set = len(p.sets) - 1
    if (q.attachment_name is not None or q.attachment_min_size is not None
            or q.attachment_max_size is not None):
        files = select(a.message_id)
        flt = q.attachment_name
        if flt is not None and not _negated(flt):
            if flt.op == "ends_with":
                files = files.where(_reversed_suffix(a.name_rev, flt.value, dialect))
            elif flt.op == "is":
                files = files.where(a.name_rev == flt.value.lower()[::-1])
            else:
                files = files.where(text_condition(a.name, flt, dialect))
        if q.attachment_min_size is not None:
            files = files.where(a.size >= q.attachment_min_size)
        if q.attachment_max_size is not None:
            files = files.where(a.size <= q.attachment_max_size)
        p.add(files, False)
        if flt is not None and _negated(flt):
            p.rows.append(m.id.not_in(select(a.message_id).where(
                text_condition(a.name, flt, dialect))))
    # A word set that holds the gateway tests it on its own rows (`words.WordSet`).
    gated = words is not None and any(w.gateway is not None for w in words.values())
    if q.gateway and not gated:
        host = m.origin_host.collate("NOCASE") == q.gateway if lite else \
            func.lower(m.origin_host) == q.gateway.lower()
        p.rows.append(host | (m.origin_ip == q.gateway))
    return p


def where_clause(q: SearchQuery, dialect: str, words: Words | None = None
                 ) -> list[ColumnElement[bool]]:
    """The conditions on `messages` that select the held messages *q* asks for."""
    p = plan(q, dialect, words)
    conds = list(p.rows) + [messages.c.id.in_(s) for s in p.sets]
    if not p.sets:
        conds.insert(0, messages.c.state == HELD)
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


def _matching_ids(p: Plan) -> Any:
    """The MIDs in every set of *p*, each once (a subquery with one column, `id`)."""
    if len(p.sets) == 1:
        only = p.sets[0]
        only = only.with_only_columns(only.selected_columns[0].label("id"))
        return (only if p.unique[0] else only.distinct()).subquery()
    labelled = [s.with_only_columns(s.selected_columns[0].label("id")) for s in p.sets]
    return intersect(*labelled).subquery()


WALK_INDEX_ABOVE = 2000


def walk_above(q: SearchQuery, held: int) -> int:
    """How many matches make walking the received-time index to a page cheaper than
    sorting the matches, among *held* messages (PostgreSQL).

    A walk reads about (offset + limit) × held ÷ matches rows, a sort reads every
    match: they cost the same at √((offset + limit) × held) matches (4,500 of a
    million for a page of 20, 14,000 of ten million).
    """
    return max(WALK_INDEX_ABOVE, math.isqrt(max(0, (q.offset + q.limit) * held)))


def _count(matches: Select[Any], cap: int | None) -> Select[Any]:
    """count(*) of *matches*, reading at most cap + 1 of them when *cap* is given."""
    if cap is not None:
        matches = matches.limit(cap + 1)
    return select(func.count()).select_from(matches.subquery())


def compile_query(q: SearchQuery, dialect: str, total: int | None = None,
                  cap: int | None = None, walk_from: int = WALK_INDEX_ABOVE,
                  words: Words | None = None) -> tuple[Select[Any], Select[Any]]:
    """(the page of MIDs in order, the total count) for *q*.

    *total*, when known, chooses the page plan on PostgreSQL: more than
    *walk_from* matches (`walk_above`) are found fastest by walking the
    received-time index, fewer by sorting them. With *cap* the count stops
    after cap + 1 matches (more than *cap*: inexact).
    """
    p = plan(q, dialect, words)
    direction = (lambda c: c.desc()) if q.order_dir == "desc" else (lambda c: c.asc())
    if p.sets and not p.rows:
        ids = _matching_ids(p)
        count = _count(select(ids.c.id), cap)
        if q.order_by == "received" and dialect == "sqlite":
            page = (select(ids.c.id).order_by(direction(ids.c.id))
                    .limit(q.limit).offset(q.offset))
            return page, count
        if q.order_by in ("received", "scheduled_exit") and p.held_rows is not None:
            # Held rows of one quarantine carry the received time and the exit.
            mq = message_quarantines.c
            key = mq.received_at if q.order_by == "received" else mq.scheduled_exit
            others = [mq.message_id.in_(s) for i, s in enumerate(p.sets) if i != p.held_set]
            walk = dialect != "sqlite" and (total is None or total > walk_from)
            page = (select(mq.message_id).where(*p.held(walk), *others)
                    .order_by(direction(key), direction(mq.message_id))
                    .limit(q.limit).offset(q.offset))
            return page, count
    else:
        count = _count(select(messages.c.id).where(*where_clause(q, dialect, words)), cap)
    conds = where_clause(q, dialect, words)
    if dialect != "sqlite" and p.sets and (total is None or total > walk_from):
        # Redundant with the sets, but it lets PostgreSQL walk the (state, received_at)
        # index newest first and stop at a page instead of hashing every match.
        conds.append(messages.c.state == HELD)
    page = (select(messages.c.id).where(*conds)
            .order_by(direction(_sort_key(q, dialect)), direction(messages.c.id))
            .limit(q.limit).offset(q.offset))
    return page, count


def counted_in_one(q: SearchQuery, dialect: str, words: Words | None = None) -> bool:
    """Whether *q* is counted and paged in one statement (`compile_counted_page`): when
    it tests the messages' rows themselves. Sets of MIDs alone are counted without
    reading `messages`, then paged."""
    return bool(plan(q, dialect, words).rows)


def compile_counted_page(q: SearchQuery, dialect: str, cap: int,
                         words: Words | None = None) -> Select[Any]:
    """Rows `(n, id)`: the matches counted up to cap + 1 (`n`) and, when `n` <= *cap*,
    the page of MIDs in order (`id`, NULL on a row when the page is empty), in one
    statement that finds the matches once (PostgreSQL).

    When `n` > *cap* the page rows are an arbitrary subset: ask `compile_query`
    for the page (which then walks a received-time index to it).
    """
    p = plan(q, dialect, words)
    direction = (lambda c: c.desc()) if q.order_dir == "desc" else (lambda c: c.asc())
    mq = message_quarantines.c
    if (p.sets and not p.rows and p.held_rows is not None
            and q.order_by in ("received", "scheduled_exit")):
        key = mq.received_at if q.order_by == "received" else mq.scheduled_exit
        others = [mq.message_id.in_(s) for i, s in enumerate(p.sets) if i != p.held_set]
        found = select(mq.message_id.label("id"), key.label("k")).where(*p.held(False),
                                                                        *others)
    else:
        found = select(messages.c.id.label("id"), _sort_key(q, dialect).label("k")).where(
            *where_clause(q, dialect, words))
    matches = found.limit(cap + 1).cte("matches")
    n = select(func.count().label("n")).select_from(matches).subquery("counted")
    order = (direction(matches.c.k), direction(matches.c.id))
    page = (select(matches.c.id, func.row_number().over(order_by=order).label("r"))
            .order_by(*order).limit(q.limit).offset(q.offset).subquery("page"))
    return (select(n.c.n, page.c.id).select_from(n.outerjoin(page, true()))
            .order_by(page.c.r))


FILTERS = ("received_from", "received_to", "sender", "recipient", "subject", "reason",
           "attachment_name", "attachment_min_size", "attachment_max_size", "gateway")


def filtered_by(q: SearchQuery) -> set[str]:
    """The filters *q* sets (`FILTERS`; the quarantines apart)."""
    return {name for name in FILTERS if getattr(q, name) not in (None, "")}


def sole_words(q: SearchQuery, words: Words | None) -> WordSet | None:
    """The words that alone answer *q*, paged by received time (`words.page`,
    `words.count`): one text filter they answer and no other filter but the gateway
    the words hold."""
    if not words or len(words) != 1 or q.order_by != "received" or q.quarantines:
        return None
    (name, found), = words.items()
    carried = {name, "gateway"} if found.gateway is not None else {name}
    if filtered_by(q) - carried or _negated(getattr(q, name)):
        return None
    return found


def counter_for(q: SearchQuery) -> str | None:
    """The maintained counter that answers *q*'s total, if one does (pure).

    `*` when nothing is filtered, a quarantine's name when only that one is.
    """
    if filtered_by(q) or len(q.quarantines) > 1:
        return None
    return q.quarantines[0] if q.quarantines else "*"


def compile_all_ids(q: SearchQuery, dialect: str, words: Words | None = None
                    ) -> Select[Any]:
    """Every matching MID, oldest first (bulk actions)."""
    return (select(messages.c.id).where(and_(*where_clause(q, dialect, words)))
            .order_by(messages.c.received_at, messages.c.id))


__all__ = ["ALL_OPS", "ORDER_BY", "PAGE_SIZES", "TOTAL_CAP", "SearchError", "SearchQuery",
           "SearchResult", "TextFilter", "compile_all_ids", "compile_counted_page",
           "counted_in_one", "describe_total", "compile_query", "like_pattern", "text_condition", "where_clause"]
