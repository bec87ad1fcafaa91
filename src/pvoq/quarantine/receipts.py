"""Release receipts on the manager: who released a message, and what became of it.

`ReceiptBook` keeps two things in the quarantine database:

- `message_releases`: one row per released message (or Send Copy), written
  when the release is settled: who, from where, how (`manual`, `expired`...),
  when;
- `release_receipts`: what the gateway reported afterwards (CPQ kind
  `release_receipt`), one row per recipient. A receipt is recorded once: a
  retried transfer, or a second receipt for a recipient that already has
  one (a delivery a crash made the gateway repeat), adds nothing.

`history` turns both into the lines `quarantine show`, the REST API and the
console show: `released by admin at <t>; delivered by gw1 to mx.example.com
at <t>: 250 2.0.0 Ok`. What a gateway and a downstream host said is hostile:
it is bounded on the wire (`cpq.transfer`), stored as received, and made
printable (`printable`) in every line built here; a page escapes it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from pvoq.cpq.transfer import ReceiptOutcome, ReleaseReceipt
from pvoq.quarantine.schema import message_releases, release_receipts

# Hears of a receipt's new outcomes inside the transaction that stores them (the audit).
Also = Callable[[Connection, list[ReceiptOutcome]], None]
MAX_SHOWN = 300  # characters of a gateway's or downstream host's text in one line


def printable(text: object, limit: int = MAX_SHOWN) -> str:
    """*text* as one printable line: control characters escaped, at most *limit* shown."""
    raw = str(text)
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw)
    return out if len(out) <= limit else out[:limit] + "..."


def when(at: float) -> str:
    """A time as the lines show it (UTC, ISO 8601, seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


@dataclass(frozen=True)
class Recorded:
    """What recording a receipt did: its recipients new here, and those known before."""

    new: tuple[int, ...]
    known: tuple[int, ...]


class ReceiptBook:
    """The release and receipt records of the quarantine database at *engine*."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def released(self, entries: Iterable[tuple[int, int]], actor: str, origin: str,
                 how: str, address: str | None = None) -> None:
        """Note that *actor* released (or copied, with *address*) these (entry, message)
        pairs now; a release noted before (another process, a retry) is kept."""
        rows = [{"entry": e, "message_id": m, "actor": actor[:128], "origin": origin[:128],
                 "how": how[:64], "address": address, "at": self.clock()} for e, m in entries]
        if not rows:
            return
        try:  # the whole chunk in one transaction (one commit: one WAL fsync)
            with self.engine.begin() as conn:
                known = {int(e) for (e,) in conn.execute(select(message_releases.c.entry).where(
                    message_releases.c.entry.in_([r["entry"] for r in rows])))}
                new = [r for r in rows if r["entry"] not in known]
                if new:
                    conn.execute(message_releases.insert(), new)
            return
        except IntegrityError:
            pass  # another manager process noted one of them meanwhile: one at a time
        for row in rows:
            try:
                with self.engine.begin() as conn:
                    if conn.execute(select(message_releases.c.entry).where(
                            message_releases.c.entry == row["entry"])).first() is None:
                        conn.execute(message_releases.insert().values(**row))
            except IntegrityError:
                continue  # noted by another manager process at the same moment

    def record(self, receipt: ReleaseReceipt, also: Also | None = None) -> Recorded:
        """Store *receipt*'s outcomes; only recipients without one yet are added. *also*
        hears of the new outcomes inside the same transaction (the audit record: one
        commit for both)."""
        for _ in range(3):  # a concurrent insert of another manager process: look again
            try:
                with self.engine.begin() as conn:
                    return self._record(conn, receipt, also, self.clock())
            except IntegrityError:
                continue
        return Recorded((), tuple(sorted({o.rid for o in receipt.outcomes})))

    def record_many(self, receipts: list[tuple[ReleaseReceipt, Also | None]]
                    ) -> list[Recorded]:
        """`record` for receipts arriving together, in one transaction (one commit). Raises
        if any fails (nothing of them is then stored): the caller records them one by one."""
        now = self.clock()
        with self.engine.begin() as conn:
            return [self._record(conn, receipt, also, now) for receipt, also in receipts]

    def _record(self, conn: Connection, receipt: ReleaseReceipt, also: Also | None,
                now: float) -> Recorded:
        wanted = {o.rid: o for o in receipt.outcomes}
        known = {int(r) for (r,) in conn.execute(
            select(release_receipts.c.rid).where(
                release_receipts.c.entry == receipt.entry,
                release_receipts.c.rid.in_(list(wanted))))}
        new = [o for rid, o in wanted.items() if rid not in known]
        if new:
            conn.execute(release_receipts.insert(), [{
                "entry": receipt.entry, "rid": o.rid,
                "message_id": receipt.message, "receipt_id": receipt.transfer_id,
                "gateway": receipt.origin.hostname,
                "gateway_mid": receipt.origin.mid, "address": o.address,
                "outcome": o.outcome.value, "host": o.host, "reply": o.reply,
                "at": float(o.at), "received_at": now} for o in new])
            if also is not None:
                also(conn, new)
        return Recorded(tuple(o.rid for o in new), tuple(sorted(known)))

    def of(self, mid: int) -> dict[str, list[dict[str, Any]]]:
        """The releases and receipts of message *mid* (its copies' included)."""
        with self.engine.connect() as conn:
            releases = [dict(r) for r in conn.execute(
                select(message_releases).where(message_releases.c.message_id == mid)
                .order_by(message_releases.c.at, message_releases.c.entry)).mappings()]
            receipts = [dict(r) for r in conn.execute(
                select(release_receipts).where(release_receipts.c.message_id == mid)
                .order_by(release_receipts.c.entry, release_receipts.c.rid)).mappings()]
        return {"releases": releases, "receipts": receipts}

    def history(self, mid: int) -> list[str]:
        """One line per release (or copy) of *mid* and what became of it."""
        found = self.of(mid)
        lines = []
        by_entry: dict[int, list[dict[str, Any]]] = {}
        for r in found["receipts"]:
            by_entry.setdefault(int(r["entry"]), []).append(r)
        entries: list[tuple[int, dict[str, Any] | None]] = [
            (int(r["entry"]), r) for r in found["releases"]]
        entries += [(e, None) for e in by_entry if e not in {x for x, _ in entries}]
        for entry, release in entries:
            if release is None:
                head = f"MID {entry} released"
            elif release["address"]:
                head = (f"copy MID {entry} to {printable(release['address'])} sent by "
                        f"{printable(release['actor'])} at {when(release['at'])}")
            else:
                how = "" if release["how"] == "manual" else f" ({printable(release['how'])})"
                head = f"released by {printable(release['actor'])}{how} at {when(release['at'])}"
            outcomes = [outcome_text(r) for r in by_entry.get(entry, [])]
            lines.append("; ".join([head, *outcomes]) if outcomes
                         else f"{head}; no receipt from the gateway yet")
        return lines


def outcome_text(row: dict[str, Any]) -> str:
    """`delivered by gw1 to mx.example.com at <t>: 250 ...` for one recipient."""
    verb = {"delivered": "delivered", "bounced": "bounced",
            "expired": "expired"}.get(str(row["outcome"]), printable(row["outcome"], 16))
    at = when(float(row["at"]))
    to = printable(row["address"])
    if verb == "expired":
        return (f"expired on {printable(row['gateway'])} for <{to}> at {at}: "
                f"{printable(row['reply'])}")
    return (f"{verb} by {printable(row['gateway'])} to {printable(row['host'])} for <{to}> "
            f"at {at}: {printable(row['reply'])}")
