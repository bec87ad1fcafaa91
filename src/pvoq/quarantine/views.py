"""The store's reads: a search's page and total, one message or many, as dicts.

`Views` is the part of `QuarantineStore` that reads held mail for the
CLI, the API and the console: `search_counted` (the page and a total
counted up to the cap: the maintained counters, PostgreSQL's search words
(`quarantine.words`) when they alone answer, else the statements
`quarantine.search` compiles), `search_ids` (a bulk action's matches),
`list`, `get`, `get_many` and `origin_hosts`.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from pvoq.quarantine import search as qsearch
from pvoq.quarantine import words
from pvoq.quarantine.intake import Intake
from pvoq.quarantine.schema import (
    ALL_HELD,
    attachments,
    held_counts,
    message_quarantines,
    messages,
)


class Views(Intake):
    """Reading held mail (see the module docstring); `QuarantineStore` is one."""

    def _quarantines_of(self, conn: Connection, ids: builtins.list[int]
                        ) -> dict[int, builtins.list[dict[str, Any]]]:
        result: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        if not ids:
            return result
        rows = conn.execute(select(message_quarantines).where(
            message_quarantines.c.message_id.in_(ids))
            .order_by(message_quarantines.c.quarantine)).mappings()
        for row in rows:
            result[row["message_id"]].append(dict(row))
        return result

    def search(self, query: qsearch.SearchQuery) -> tuple[builtins.list[dict[str, Any]], int]:
        """The page of held messages matching *query*, and how many match in all (exact)."""
        rows, total, _ = self.search_counted(query, cap=None)
        return rows, total

    def search_counted(self, query: qsearch.SearchQuery, cap: int | None = qsearch.TOTAL_CAP
                       ) -> qsearch.SearchResult:
        """The page matching *query* and its total, counted up to *cap* (None: exact).

        A total from the maintained counters (everything, one quarantine) is
        always exact; a filtered one above *cap* is reported as *cap*, inexact.
        """
        counter = qsearch.counter_for(query)
        exact = True
        with self.engine.connect() as conn:
            found = self._words(conn, query)
            sole = qsearch.sole_words(query, found)
            if sole is not None:  # one text filter the words answer: no look at `messages`
                total = words.count(conn, sole, cap) if query.with_total else -1
                if cap is not None and total > cap:
                    total, exact = cap, False
                ids = words.page(conn, sole, query.order_dir, query.limit, query.offset)
                return qsearch.SearchResult(self._rows(conn, ids), total, exact)
            _, count_stmt = qsearch.compile_query(query, self.dialect, cap=cap, words=found)
            if counter is not None:
                count_stmt = select(held_counts.c.n).where(held_counts.c.quarantine == counter)
            if (self.dialect == "postgresql" and counter is None and cap is not None
                    and query.with_total and qsearch.counted_in_one(query, self.dialect,
                                                                     found)):
                # The matches found once: counted and, up to the cap, paged from there.
                page = conn.execute(qsearch.compile_counted_page(query, self.dialect, cap,
                                                                 found)).all()
                total = int(page[0].n)
                if total <= cap:
                    ids = [int(r.id) for r in page if r.id is not None]
                    return qsearch.SearchResult(self._rows(conn, ids), total, True)
            elif query.with_total:
                total = int(conn.execute(count_stmt).scalar() or 0)
            else:
                total = -1
            if counter is None and cap is not None and total > cap:
                total, exact = cap, False
            walk_from = qsearch.WALK_INDEX_ABOVE
            if self.dialect == "postgresql" and exact and total > walk_from:
                held = conn.execute(select(held_counts.c.n).where(
                    held_counts.c.quarantine == ALL_HELD)).scalar()
                walk_from = qsearch.walk_above(query, int(held or 0))
            ids_stmt, _ = qsearch.compile_query(query, self.dialect,
                                                total if query.with_total else None,
                                                walk_from=walk_from, words=found)
            ids = [int(i) for (i,) in conn.execute(ids_stmt)]
            rows = self._rows(conn, ids)
        return qsearch.SearchResult(rows, total, exact)

    def _words(self, conn: Connection, query: qsearch.SearchQuery
               ) -> dict[str, words.WordSet]:
        """PostgreSQL: the distinct words that answer *query*'s text filters, by filter."""
        found: dict[str, words.WordSet] = {}
        if self.dialect != "postgresql":
            return found
        for name in words.FIELDS:
            flt = getattr(query, name)
            if flt is None or flt.op in qsearch.NEGATED:
                continue
            ws = words.lookup(conn, name, flt.op, flt.value,
                              qsearch.like_pattern(flt.op, flt.value))
            if ws is not None:  # the first set holds the gateway filter too
                found[name] = ws if found or not query.gateway else \
                    replace(ws, gateway=query.gateway)
        return found

    def search_ids(self, query: qsearch.SearchQuery) -> builtins.list[int]:
        """Every MID matching *query* (no paging): what a bulk action acts on."""
        with self.engine.connect() as conn:
            stmt = qsearch.compile_all_ids(query, self.dialect, self._words(conn, query))
            return [int(i) for (i,) in conn.execute(stmt)]

    def _rows(self, conn: Connection, ids: builtins.list[int]) -> builtins.list[dict[str, Any]]:
        if not ids:
            return []
        by_id = {r["id"]: dict(r) for r in conn.execute(
            select(messages).where(messages.c.id.in_(ids))).mappings()}
        qs = self._quarantines_of(conn, ids)
        result = []
        for i in ids:
            r = by_id[i]
            r["quarantines"] = qs[i]
            r["recipients"] = json.loads(r["recipients"])
            r.pop("meta", None)
            result.append(r)
        return result

    def list(self, *, quarantine: str | None = None, limit: int = 100,
             offset: int = 0) -> tuple[builtins.list[dict[str, Any]], int]:
        """Held messages, newest first, with a total count."""
        return self.search(qsearch.SearchQuery(
            quarantines=(quarantine,) if quarantine else (), limit=limit, offset=offset))

    def get(self, mid: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(messages).where(messages.c.id == mid)).mappings().first()
            if row is None:
                return None
            result = dict(row)
            result["quarantines"] = self._quarantines_of(conn, [mid])[mid]
            result["attachments"] = [dict(name=n, size=s) for n, s in conn.execute(
                select(attachments.c.name, attachments.c.size)
                .where(attachments.c.message_id == mid).order_by(attachments.c.n))]
        result["recipients"] = json.loads(result["recipients"])
        result["meta"] = json.loads(result["meta"])
        return result

    def origin_hosts(self, mids: Iterable[int]) -> dict[int, str]:
        """The gateway each of *mids* came from (one query); the MIDs not found are missing
        from the result. What checking a release receipt needs, and only that."""
        wanted = sorted(set(mids))
        if not wanted:
            return {}
        with self.engine.connect() as conn:
            return {int(mid): str(host) for mid, host in conn.execute(
                select(messages.c.id, messages.c.origin_host).where(messages.c.id.in_(wanted)))}

    def get_many(self, mids: builtins.list[int]) -> dict[int, dict[str, Any]]:
        """`get` for many MIDs at once (three queries in all); the MIDs not found are
        missing from the result."""
        if not mids:
            return {}
        with self.engine.connect() as conn:
            found = {int(r["id"]): dict(r) for r in conn.execute(
                select(messages).where(messages.c.id.in_(mids))).mappings()}
            ids = sorted(found)
            qs = self._quarantines_of(conn, ids)
            files: dict[int, builtins.list[dict[str, Any]]] = {i: [] for i in ids}
            for m, n, s in conn.execute(
                    select(attachments.c.message_id, attachments.c.name, attachments.c.size)
                    .where(attachments.c.message_id.in_(ids))
                    .order_by(attachments.c.message_id, attachments.c.n)):
                files[int(m)].append(dict(name=n, size=s))
        for mid, result in found.items():
            result["quarantines"] = qs[mid]
            result["attachments"] = files[mid]
            result["recipients"] = json.loads(result["recipients"])
            result["meta"] = json.loads(result["meta"])
        return found

