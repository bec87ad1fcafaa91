"""The statements of the store's intake batch, as driver SQL built once per dialect.

An intake batch (`quarantine.intake`) runs the same handful of INSERTs every
time, each with a list of rows. Built as SQLAlchemy constructs, each would be
rebuilt, its cache key computed and its compiled form looked up per batch: on
the manager's writer thread that was about a sixth of its time, holding the
GIL the event loop needs. Here each statement is its text, written once from
the tables' columns in the driver's parameter style (`:name` for sqlite3,
`%(name)s` for psycopg), and run with `Connection.exec_driver_sql` (errors are
still SQLAlchemy's: a unique-key conflict is an `IntegrityError`). The held
counters take one upsert (`ON CONFLICT … DO UPDATE`, both dialects) for all
the names of a batch.

On SQLite each of those statements but the bodies' takes its batch's rows as
one JSON array (`INSERT … SELECT … FROM json_each(:rows)`): one step of the
statement for the batch, where `executemany` steps once a row. The driver
lets go of the GIL around each step and the writer must take it back, while
the event loop holds it most of the time (docs/benchmarks.md, "CPQ
throughput"). Bodies are bytes, which JSON does not carry: on SQLite a batch's
bodies go in one multi-row `VALUES` instead (`bodies_of`), at most
`BODIES_A_STATEMENT` a statement, so that they too take one step.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from pvoq.quarantine.schema import (
    FTS_COLUMNS,
    attachments,
    message_bodies,
    message_quarantines,
    message_recipients,
    messages,
)

# The columns an arrival fills (`arrivals.arrival_rows`); the others keep their defaults.
# Those of MESSAGE_JSON hold JSON text, and come in a row as the value itself: on SQLite
# the batch's array carries them as they are (no JSON text inside JSON text, escaped
# twice), elsewhere they are serialized a row at a time (`message_rows`).
MESSAGE_COLUMNS = ("id", "transfer_id", "origin_host", "origin_serial", "origin_mid",
                   "origin_ip", "sender", "recipients", "subject", "received_at", "size",
                   "body_path", "state", "meta", "sender_rev")
MESSAGE_JSON = ("recipients", "meta")
HELD_COLUMNS = ("message_id", "quarantine", "reason", "reason_id", "stage", "state",
                "received_at", "scheduled_exit", "acted_at", "how")


def _param(name: str, dialect: str) -> str:
    return f":{name}" if dialect == "sqlite" else f"%({name})s"


def insert_sql(table: str, columns: tuple[str, ...] | list[str], dialect: str) -> str:
    """`INSERT INTO table (columns) VALUES (params)` in *dialect*'s parameter style."""
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(_param(c, dialect) for c in columns)})")


def json_insert_sql(table: str, columns: tuple[str, ...] | list[str],
                    as_json: tuple[str, ...] = ()) -> str:
    """SQLite: `INSERT INTO table (columns)` of every row of one JSON array parameter;
    the columns *as_json* take their value's JSON text (an object or array in the row)."""
    values = ", ".join(f"value {'->' if c in as_json else '->>'} '{c}'" for c in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values} FROM json_each(:rows)"


BODIES_A_STATEMENT = 256  # SQLite: rows of one multi-row bodies INSERT (two variables each)


@functools.lru_cache(maxsize=64)
def bodies_values_sql(n: int) -> str:
    """SQLite: the INSERT of *n* bodies in one statement (qmark parameters, in pairs)."""
    return (f"INSERT INTO {message_bodies.name} (message_id, body) VALUES "
            + ", ".join(["(?, ?)"] * n))


def _all(table: Table) -> tuple[str, ...]:
    return tuple(c.name for c in table.columns)


@dataclass(frozen=True)
class BatchSql:
    """The driver SQL of one dialect (`sqlite` or `postgresql`)."""

    messages: str
    held: str
    recipients: str
    attachments: str
    bodies: str
    count: str            # rows {quarantine, n}: n added to the counter, created if missing
                          # (SQLite: one JSON array, as `rows`)
    fts: dict[str, str]   # SQLite: name → INSERT into its trigram table (rows {rowid, name})
    json_rows: bool = False  # SQLite: the rows of every statement but bodies as one array

    def rows(self, rows: list[dict[str, Any]]) -> Any:
        """The parameters of a statement over *rows* (all but bodies): one JSON
        array on SQLite, the rows themselves (one execution each) on PostgreSQL. Without
        `ensure_ascii` a text with no UTF-8 form is refused by the driver, as it would be
        bound as a row."""
        return {"rows": json.dumps(rows, ensure_ascii=False)} if self.json_rows else rows

    def message_rows(self, rows: list[dict[str, Any]]) -> Any:
        """`rows` of the messages' statement, whose MESSAGE_JSON columns hold values."""
        if self.json_rows:
            return self.rows(rows)
        return [{**r, **{c: json.dumps(r[c]) for c in MESSAGE_JSON}} for r in rows]

    def bodies_of(self, bodies: Sequence[tuple[int, bytes]]) -> list[tuple[str, Any]]:
        """The statements and parameters that insert *bodies* (MID, body): on SQLite one
        multi-row INSERT a `BODIES_A_STATEMENT` of them, elsewhere one INSERT run once a
        row."""
        if not bodies:
            return []
        if not self.json_rows:
            return [(self.bodies, [dict(message_id=m, body=b) for m, b in bodies])]
        return [(bodies_values_sql(len(part)), tuple(x for pair in part for x in pair))
                for part in (bodies[i:i + BODIES_A_STATEMENT]
                             for i in range(0, len(bodies), BODIES_A_STATEMENT))]

    @classmethod
    def for_dialect(cls, dialect: str) -> BatchSql:
        unknown = set(MESSAGE_COLUMNS) - set(_all(messages)) | \
            set(HELD_COLUMNS) - set(_all(message_quarantines))
        if unknown:  # the schema moved on without this module
            raise RuntimeError(f"intake columns not in the schema: {sorted(unknown)}")
        lite = dialect == "sqlite"

        def rows_sql(table: str, columns: tuple[str, ...] | list[str],
                     as_json: tuple[str, ...] = ()) -> str:
            return json_insert_sql(table, columns, as_json) if lite else \
                insert_sql(table, columns, dialect)

        return cls(
            messages=rows_sql(messages.name, MESSAGE_COLUMNS, MESSAGE_JSON),
            held=rows_sql(message_quarantines.name, HELD_COLUMNS),
            recipients=rows_sql(message_recipients.name, _all(message_recipients)),
            attachments=rows_sql(attachments.name, _all(attachments)),
            bodies=insert_sql(message_bodies.name, _all(message_bodies), dialect),
            # (`WHERE true`: SQLite's upsert after a SELECT, as its grammar requires)
            count=(json_insert_sql("held_counts", ("quarantine", "n")) + " WHERE true"
                   if lite else insert_sql("held_counts", ("quarantine", "n"), dialect))
            + " ON CONFLICT (quarantine) DO UPDATE SET n = held_counts.n + excluded.n",
            fts={name: rows_sql(f"fts_{name}", ("rowid", name))
                 for name in FTS_COLUMNS} if lite else {},
            json_rows=lite)
