"""What the administration pages show of the quarantines and of the audit trail.

`quarantine.overview`: every quarantine with its settings and what it holds
(messages, bytes, the oldest message's arrival). `audit.search`: the trail,
newest first, filtered by actor, action, MID and time range, a page at a
time (a page's `next` is the sequence number to continue below). Both are
admin-socket commands (`OverviewCommands`), so that the console reaches
them as the CLI would, with the same permission checks and audit; their
queries read the database in a thread, off the event loop.

Filters are bounded and checked: a bad value is an `Invalid` naming the
filter, never a 500 or an unbounded query.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from pvoq.admin.registry import CommandSet, command
from pvoq.errors import Invalid
from pvoq.quarantine.schema import audit, held_counts, message_quarantines, messages
from pvoq.quarantine.settings import QuarantineSettings
from pvoq.quarantine.states import State

PAGE_MAX = 500
"""The most audit records one page shows."""
TEXT_MAX = 128
"""The longest actor or action filter (the columns' width)."""
MID_MAX = 2**63 - 1
_SCAN = 1000   # records read per round while a MID filter discards false matches


class FilterError(Invalid):
    """A bad audit filter; *field* names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def holdings(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per quarantine: messages held (the maintained counter), their bytes and the
    oldest one's arrival (epoch seconds, None when empty)."""
    held = State.HELD.value
    with engine.connect() as conn:
        counts = {str(q): int(n) for q, n in conn.execute(
            select(held_counts.c.quarantine, held_counts.c.n))}
        rows = conn.execute(
            select(message_quarantines.c.quarantine, func.sum(messages.c.size),
                   func.min(message_quarantines.c.received_at))
            .join(messages, messages.c.id == message_quarantines.c.message_id)
            .where(message_quarantines.c.state == held)
            .group_by(message_quarantines.c.quarantine)).all()
    result: dict[str, dict[str, Any]] = {}
    for name, size, oldest in rows:
        result[str(name)] = {"messages": counts.get(str(name), 0), "bytes": int(size or 0),
                             "oldest": None if oldest is None else float(oldest)}
    for name, n in counts.items():
        if not name.startswith("*") and name not in result:
            result[name] = {"messages": n, "bytes": 0, "oldest": None}
    return result


def overview(settings: dict[str, QuarantineSettings], engine: Engine,
             quota_bytes: int) -> dict[str, Any]:
    """Every configured quarantine, its settings and its holdings."""
    held = holdings(engine)
    rows = []
    for name, s in sorted(settings.items(), key=lambda kv: (not kv[1].builtin, kv[0].lower())):
        h = held.get(name, {"messages": 0, "bytes": 0, "oldest": None})
        rows.append({"name": name, "builtin": s.builtin, "retention_s": s.retention_s,
                     "default_action": str(s.default_action), "free_up_space": s.overflow,
                     "early_release": s.early_release.active, **h})
    return {"quarantines": rows, "quota_bytes": quota_bytes,
            "used_bytes": sum(int(r["bytes"]) for r in rows)}


@dataclass(frozen=True)
class AuditFilter:
    """Which audit records to show: all given filters must match."""

    actor: str = ""
    action: str = ""
    mid: int | None = None
    since: float | None = None    # epoch seconds, inclusive
    until: float | None = None    # epoch seconds, exclusive
    before: int | None = None     # records with a smaller sequence number (the next page)
    limit: int = 50

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> AuditFilter:
        """From JSON arguments; unknown keys and bad values refused naming the filter."""
        known = {"actor", "action", "mid", "since", "until", "before", "limit"}
        unknown = sorted(set(args) - known)
        if unknown:
            raise FilterError(unknown[0], f"unknown filter; the filters are "
                              f"{', '.join(sorted(known))}")

        def text(key: str) -> str:
            value = str(args.get(key) or "").strip()
            if len(value) > TEXT_MAX:
                raise FilterError(key, f"at most {TEXT_MAX} characters")
            return value

        def number(key: str, lo: float, hi: float, *, integer: bool) -> Any:
            raw = args.get(key)
            if raw is None or raw == "":
                return None
            try:
                value = int(str(raw)) if integer else float(str(raw))
            except ValueError:
                raise FilterError(key, f"not a number: {str(raw)[:40]!r}") from None
            if isinstance(value, float) and not math.isfinite(value) or not lo <= value <= hi:
                raise FilterError(key, f"out of range (from {lo:g} to {hi:g})")
            return value

        limit = number("limit", 1, PAGE_MAX, integer=True)
        return cls(actor=text("actor"), action=text("action"),
                   mid=number("mid", 1, MID_MAX, integer=True),
                   since=number("since", 0, 1e11, integer=False),
                   until=number("until", 0, 1e11, integer=False),
                   before=number("before", 1, MID_MAX, integer=True),
                   limit=50 if limit is None else limit)

    def conditions(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.actor:
            where.append(audit.c.actor == self.actor)
        if self.action:
            where.append(audit.c.action == self.action)
        if self.since is not None:
            where.append(audit.c.at >= self.since)
        if self.until is not None:
            where.append(audit.c.at < self.until)
        if self.mid is not None:
            n = self.mid
            # canonical JSON (no spaces): "mid":N as a value, or N in a list of MIDs
            where.append(or_(*(audit.c.detail.like(f"%{p}%") for p in (
                f'"mid":{n},', f'"mid":{n}}}', f"[{n},", f"[{n}]", f",{n},", f",{n}]"))))
        return where


def mentions(detail: dict[str, Any], mid: int) -> bool:
    """Whether an audit record's detail names *mid* (`mid`, or in `mids`)."""
    if detail.get("mid") == mid:
        return True
    mids = detail.get("mids")
    return isinstance(mids, list) and mid in mids


def search_audit(engine: Engine, flt: AuditFilter) -> dict[str, Any]:
    """One page of records matching *flt*, newest first, and where the next page starts
    (None: this is the last)."""
    found: list[dict[str, Any]] = []
    before = flt.before
    more = False
    with engine.connect() as conn:
        while True:
            where = flt.conditions()
            if before is not None:
                where.append(audit.c.seq < before)
            want = flt.limit + 1 - len(found)
            batch = want if flt.mid is None else max(want, _SCAN)
            query = select(audit).order_by(audit.c.seq.desc()).limit(batch)
            if where:
                query = query.where(and_(*where))
            rows = conn.execute(query).mappings().all()
            for row in rows:
                record = dict(row)
                record["detail"] = json.loads(record["detail"])
                if flt.mid is None or mentions(record["detail"], flt.mid):
                    found.append(record)
            if len(found) > flt.limit:
                more = True
                break
            if len(rows) < batch:
                break
            before = int(rows[-1]["seq"])
    page = found[:flt.limit]
    return {"records": page, "next": int(page[-1]["seq"]) if more and page else None}


_ACTION = re.compile(r"^[a-z][a-z0-9-]*$")


class OverviewCommands(CommandSet):
    """`quarantine.overview` and `audit.search` over the store's database.

    *settings* gives the effective quarantine settings, *engine* the store's
    database, *quota* the space quota in bytes.
    """

    def __init__(self, settings: Callable[[], dict[str, QuarantineSettings]], engine: Engine,
                 quota: Callable[[], int]) -> None:
        self.settings = settings
        self.engine = engine
        self.quota = quota

    @command("quarantine.overview")
    async def quarantine_overview(self, args: dict[str, Any]) -> dict[str, Any]:
        # A scan of the held messages: in a thread, so CPQ sessions go on meanwhile.
        data = await asyncio.to_thread(overview, self.settings(), self.engine, self.quota())
        return {"data": data}

    @command("audit.search")
    async def audit_search(self, args: dict[str, Any]) -> dict[str, Any]:
        flt = AuditFilter.from_args(dict(args))
        if flt.action and not _ACTION.match(flt.action):
            raise FilterError("action", "an action is lowercase words joined by '-'")
        return {"data": await asyncio.to_thread(search_audit, self.engine, flt)}
