"""The quarantine service: what the CLI, the REST API and the scheduler call.

It checks the caller's role, applies an action through the store, hands a
settled message to the `Settler` (the manager: spool the release or drop
the body), writes the mail_logs lines and the audit record. Expiry and the
overflow rule live here too, with the clock injected.

It never talks to the network itself; delivery is the Settler's job.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from pvoq.cpq.transfer import ReceiptOutcome, ReleaseReceipt
from pvoq.errors import Conflict, Invalid, OperatorError
from pvoq.quarantine import roles
from pvoq.quarantine.audit import AuditTrail, key_path
from pvoq.quarantine.receipts import ReceiptBook, Recorded, printable
from pvoq.quarantine.recipients import split
from pvoq.quarantine.roles import SYSTEM, Caller, PermissionDenied
from pvoq.quarantine.schema import saved_searches
from pvoq.quarantine.search import TOTAL_CAP, SearchQuery, SearchResult
from pvoq.quarantine.settings import (
    RELEASE,
    choose_overflow,
    crossed_threshold,
    delay_seconds,
    percent_full,
)
from pvoq.quarantine.states import ACTION_STATE
from pvoq.quarantine.store import (
    DELETED,
    HELD,
    RELEASED,
    QuarantineError,
    QuarantineStore,
)
from pvoq.smtp.limits import address_fault

ACTIONS = ACTION_STATE
MAX_MID = 2**63 - 1          # MIDs are 64-bit signed integers in every database
SLICE = 500                  # MIDs per transaction and per step of a long action
MAX_MIDS = 10_000            # MIDs one request may name


def valid_mid(mid: int) -> bool:
    """Whether *mid* can name a message at all (a positive 64-bit integer)."""
    return not isinstance(mid, bool) and isinstance(mid, int) and 0 < mid <= MAX_MID


def check_mids(mids: list[int], most: int = MAX_MIDS) -> None:
    """Refuse a request naming more than *most* MIDs (an operator error: 400)."""
    if len(mids) > most:
        raise Invalid(f"at most {most} MIDs in one request, not {len(mids)}; "
                      "use a bulk action on a search instead")


def _unknown(mid: int) -> ActionResult:
    return ActionResult(mid, False, text=f"No message with MID {mid} in the quarantines.")


class Settler(Protocol):
    def settle(self, mid: int, state: str, how: str = "manual",
               names: tuple[str, ...] | None = None) -> None: ...

    def send_copy(self, mid: int, address: str) -> int: ...

    def allocate_mid(self) -> int: ...

    def settle_many(self, settled: list[tuple[int, str, tuple[str, ...]]], how: str) -> None:
        """Settle claimed messages (mid, state, quarantines acted on); may finish later."""


class Rescanner(Protocol):
    """Has the origin gateway of a held message scan it, changing nothing (the manager's
    `manager.rescan.DryRescanner`); raises an `OperatorError` naming the peer."""

    async def rescan(self, record: dict[str, Any], body: bytes) -> dict[str, Any]: ...


@dataclass
class ActionResult:
    """One message's result in a (bulk) action."""

    mid: int
    ok: bool
    acted_on: tuple[str, ...] = ()
    settled: str | None = None
    text: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"mid": self.mid, "ok": self.ok, "acted_on": list(self.acted_on),
                "settled": self.settled, "text": self.text}


@dataclass
class QuarantineService:
    """The quarantine actions and views, as the CLI, the REST API and the expiry loop call them.

    Each call checks the *caller*'s role, acts through *store*, writes the
    audit record and the mail_logs lines (through *log*), and hands a message
    that no quarantine holds any more to *settler* (the manager's
    `Releases`). `quota_bytes` (0: none) bounds the quarantine space:
    `make_room` applies the overflow rule before a transfer is stored.
    `audit_key_file` is where the audit key lives (`audit.key_path`; by
    default beside a SQLite database, else beside the bodies directory).
    """

    store: QuarantineStore
    settler: Settler
    log: Callable[[str], None]
    clock: Callable[[], float] = time.time
    quota_bytes: int = 0
    audit_key_file: Path | None = None
    rescanner: Rescanner | None = None
    total_cap: int = TOTAL_CAP       # a filtered search counts its matches up to here
    audit: AuditTrail = field(init=False)
    receipts: ReceiptBook = field(init=False)

    def __post_init__(self) -> None:
        key_file = self.audit_key_file or key_path(self.store.engine.url,
                                                    self.store.bodies.parent)
        self.audit = AuditTrail.open(self.store.engine, self.clock, key_file, self.log)
        self.receipts = ReceiptBook(self.store.engine, self.clock)

    # -- views ---------------------------------------------------------------
    def search(self, caller: Caller, query: SearchQuery) -> tuple[list[dict[str, Any]], int]:
        """A page and the exact total (counted to the last match)."""
        rows, total, _ = self.search_counted(caller, query, exact=True)
        return rows, total

    def search_counted(self, caller: Caller, query: SearchQuery, *,
                       exact: bool = False) -> SearchResult:
        """A page and the total counted up to `total_cap` (`exact` false: more than that).

        *exact* counts every match (slow when a search matches millions).
        """
        self._authorize(caller, "search")
        query = SearchQuery.from_dict({**json.loads(query.to_json()),
                                       "quarantines": roles.visible(caller, query.quarantines)})
        result = self.store.search_counted(query, None if exact else self.total_cap)
        details: dict[str, Any] = {"query": json.loads(query.to_json()), "total": result.total}
        if not result.exact:
            details["total_exact"] = False
        self.audit.append(caller.actor, caller.origin, "search", details)
        return result

    def details(self, caller: Caller, mid: int, *, with_body: bool = True) -> dict[str, Any]:
        self._authorize(caller, "view")
        record = self.store.get(mid) if valid_mid(mid) else None
        if record is None:
            raise QuarantineError(f"No message with MID {mid} in the quarantines.")
        self._check_quarantines(caller, [q["quarantine"] for q in record["quarantines"]])
        record["body"] = ""
        if with_body and record["state"] == HELD:
            record["body"] = self.store.read_body(mid).decode("utf-8", "replace")
        record["receipts"] = self.receipts.of(mid)["receipts"]
        record["release_history"] = self.receipts.history(mid)
        self.audit.append(caller.actor, caller.origin, "view", {"mid": mid})
        return record

    def _check_quarantines(self, caller: Caller, names: list[str]) -> None:
        if caller.quarantines is not None and not set(names) & set(caller.quarantines):
            raise PermissionDenied("no access to the quarantines holding this message")

    # -- permissions: every action asks here ---------------------------------
    @staticmethod
    def _authorize(caller: Caller, action: str, *named: str | None) -> None:
        """The role may *action*, and every quarantine the action names is granted to it."""
        roles.check(caller, action)
        names = tuple(n for n in named if n is not None)
        if names:
            roles.visible(caller, names)

    def _granted(self, caller: Caller, mid: int, quarantine: str | None
                 ) -> tuple[str, ...] | None:
        """The quarantines an action by *caller* on *mid* may touch (None: any that hold it).

        A caller with granted quarantines acts only in those that hold *mid*:
        empty when none of them does (the action then fails like an unknown MID).
        """
        if quarantine is not None or caller.quarantines is None:
            return None if quarantine is None else (quarantine,)
        return tuple(q for q in self.store.held_in(mid) if q in caller.quarantines)

    @staticmethod
    def _not_granted(mid: int) -> ActionResult:
        return ActionResult(mid, False,
                            text=f"MID {mid} is not held in a quarantine granted to this role.")

    # -- actions ---------------------------------------------------------------
    def act(self, caller: Caller, action: str, mid: int, quarantine: str | None = None,
            *, how: str = "manual", recipients: list[str] | None = None) -> ActionResult:
        """Release or delete one message (from one quarantine or all it is in).

        With *recipients*, for those recipients only: they are split off into a
        new message (same body, quarantines and exits) and the action applies to it.
        """
        self._authorize(caller, action, quarantine)
        state = ACTIONS[action]
        if not valid_mid(mid):
            return _unknown(mid)
        if recipients:
            record = self.store.get(mid)
            if record is not None:
                self._check_quarantines(caller, [q["quarantine"] for q in record["quarantines"]])
            try:
                part = split(self.store, mid, recipients, self.settler.allocate_mid())
            except QuarantineError as exc:
                return ActionResult(mid, False, text=str(exc))
            if part != mid:
                self.audit.append(caller.actor, caller.origin, "split",
                                  {"mid": mid, "new_mid": part, "recipients": recipients})
                self.log(f"MID {mid} rewritten to MID {part} by per-recipient {action} "
                         f"({', '.join(recipients)})")
                mid = part
        received = self._received_at(mid)
        try:
            outcome = self.store.act(mid, state, quarantine, how=how,
                                     quarantines_in=caller.quarantines)
        except QuarantineError as exc:
            return ActionResult(mid, False, text=str(exc))
        self.audit.append(caller.actor, caller.origin, action,
                          {"mid": mid, "quarantines": list(outcome.acted_on), "how": how})
        if outcome.settled == RELEASED:
            self.receipts.released([(mid, mid)], caller.actor, caller.origin, how)
        self._after(mid, state, outcome.acted_on, outcome.settled, how, received)
        verb = "released" if state == RELEASED else "deleted"
        text = f"MID {mid} {verb} from {', '.join(outcome.acted_on)}."
        if outcome.settled == RELEASED:
            where = getattr(self.settler, "delivers_on", "the.cpq.release.host")
            text += f" Queued for delivery on {where}."
        elif outcome.settled is None and state == RELEASED and self.store.held_in(mid):
            text += " Still held in another quarantine."
        return ActionResult(mid, True, outcome.acted_on, outcome.settled, text)

    def act_many(self, caller: Caller, action: str, mids: list[int],
                 quarantine: str | None = None, *, how: str = "manual",
                 chunk: int = SLICE) -> list[ActionResult]:
        """Release or delete many messages: a transaction per chunk, one audit record each."""
        return [r for part in self.act_slices(caller, action, mids, quarantine, how=how,
                                              chunk=chunk) for r in part]

    def act_slices(self, caller: Caller, action: str, mids: list[int],
                   quarantine: str | None = None, *, how: str = "manual",
                   chunk: int = SLICE) -> Iterator[list[ActionResult]]:
        """`act_many` one chunk at a time: a caller on an event loop yields between them."""
        self._authorize(caller, action, quarantine)
        state = ACTIONS[action]
        for start in range(0, len(mids), chunk):
            results: list[ActionResult] = [_unknown(m) for m in mids[start:start + chunk]
                                           if not valid_mid(m)]
            part = [m for m in mids[start:start + chunk] if valid_mid(m)]
            outcomes = self.store.act_many(part, state, quarantine, how=how,
                                           quarantines_in=caller.quarantines)
            self.audit.append(caller.actor, caller.origin, action, {
                "mids": [o.mid for o in outcomes], "how": how,
                "quarantines": sorted({q for o in outcomes for q in o.acted_on})})
            done = {o.mid for o in outcomes}
            settled = [(o.mid, o.settled, o.acted_on) for o in outcomes if o.settled]
            released = [(m, m) for m, state_, _ in settled if state_ == RELEASED]
            if released:
                self.receipts.released(released, caller.actor, caller.origin, how)
            if settled:
                self.settler.settle_many(settled, how)
            for o in outcomes:
                if o.settled is None:
                    self._after(o.mid, state, o.acted_on, None, how, self._received_at(o.mid))
                results.append(ActionResult(o.mid, True, o.acted_on, o.settled,
                                            f"MID {o.mid} {action}d."))
            results += [ActionResult(m, False, text=f"MID {m} is not held there.")
                        for m in part if m not in done]
            yield results

    def _received_at(self, mid: int) -> float | None:
        record = self.store.get(mid)
        return None if record is None else float(record["received_at"])

    def _after(self, mid: int, state: str, acted: tuple[str, ...], settled: str | None,
               how: str, received: float | None) -> None:
        if settled is not None:
            self.settler.settle(mid, settled, how, acted)
            return
        held_for = self.clock() - (received or self.clock())
        verb = "released from" if state == RELEASED else "deleted from"
        for name in acted:
            self.log(f'MID {mid} {verb} quarantine "{name}" ({how}) t={held_for:.0f}')

    def delay(self, caller: Caller, mid: int, delay: str, quarantine: str | None = None
              ) -> ActionResult:
        """Delay Scheduled Exit by 8h, 24h, 48h or 1w (in the caller's quarantines only)."""
        self._authorize(caller, "delay", quarantine)
        seconds = delay_seconds(delay)
        if not valid_mid(mid):
            return _unknown(mid)
        scope = self._granted(caller, mid, quarantine)
        if scope == ():
            return self._not_granted(mid)
        try:
            changed = sorted({q for name in scope or (None,)
                              for q in self.store.delay(mid, seconds, name)})
        except QuarantineError as exc:
            return ActionResult(mid, False, text=str(exc))
        self.audit.append(caller.actor, caller.origin, "delay",
                          {"mid": mid, "quarantines": changed, "delay": delay})
        return ActionResult(mid, True, tuple(changed),
                            text=f"MID {mid}: scheduled exit delayed by {delay} in "
                                 f"{', '.join(changed)}.")

    def move(self, caller: Caller, mid: int, source: str, target: str) -> ActionResult:
        """Move to another policy quarantine, keeping the scheduled exit and reason."""
        self._authorize(caller, "move", source, target)
        if not valid_mid(mid):
            return _unknown(mid)
        try:
            self.store.move(mid, source, target)
        except QuarantineError as exc:
            return ActionResult(mid, False, text=str(exc))
        self.audit.append(caller.actor, caller.origin, "move",
                          {"mid": mid, "from": source, "to": target})
        self.log(f'MID {mid} moved from quarantine "{source}" to "{target}"')
        return ActionResult(mid, True, (source,), text=f'MID {mid} moved to "{target}".')

    def copy(self, caller: Caller, mid: int, address: str) -> ActionResult:
        """Send a copy to *address* through the originating gateway (admins only)."""
        self._authorize(caller, "copy")
        fault = copy_address_fault(address)
        if fault is not None:
            return ActionResult(mid, False, text=f"not an address a gateway accepts: "
                                                 f"{address!r} ({fault})")
        record = self.store.get(mid) if valid_mid(mid) else None
        if record is None or record["state"] != HELD:
            return _unknown(mid)
        if self._granted(caller, mid, None) == ():
            return self._not_granted(mid)
        copy_mid = self.settler.send_copy(mid, address)
        self.receipts.released([(copy_mid, mid)], caller.actor, caller.origin, "copy", address)
        self.audit.append(caller.actor, caller.origin, "copy",
                          {"mid": mid, "to": address, "copy_mid": copy_mid})
        self.log(f"MID {mid} copy queued to {address} as MID {copy_mid}")
        return ActionResult(mid, True, text=f"MID {mid}: copy queued to {address} "
                                            f"as MID {copy_mid}.")

    def bulk(self, caller: Caller, query: SearchQuery, action: str, *, dry_run: bool,
             quarantine: str | None = None, delay: str | None = None,
             target: str | None = None, address: str | None = None) -> dict[str, Any]:
        """Apply *action* to every message *query* finds; with dry_run, only list them."""
        *_, summary = self.bulk_steps(caller, query, action, dry_run=dry_run,
                                      quarantine=quarantine, delay=delay, target=target,
                                      address=address)
        assert summary is not None
        return summary

    def bulk_steps(self, caller: Caller, query: SearchQuery, action: str, *, dry_run: bool,
                   quarantine: str | None = None, delay: str | None = None,
                   target: str | None = None, address: str | None = None,
                   chunk: int = SLICE) -> Iterator[dict[str, Any] | None]:
        """`bulk` a slice at a time: None after each slice of *chunk* MIDs, then the summary.

        A caller on an event loop yields to it at each None, so that a bulk
        action on many messages never holds the loop for more than one slice.
        """
        self._authorize(caller, action)
        query = SearchQuery.from_dict({**json.loads(query.to_json()),
                                       "quarantines": roles.visible(caller, query.quarantines)})
        mids = self.store.search_ids(query)
        self.audit.append(caller.actor, caller.origin, "bulk-dry-run" if dry_run else "bulk",
                          {"action": action, "query": json.loads(query.to_json()),
                           "count": len(mids)})
        if dry_run:
            yield {"dry_run": True, "action": action, "count": len(mids), "mids": mids}
            return
        results: list[ActionResult] = []
        if action in ACTIONS:
            for part in self.act_slices(caller, action, mids, quarantine, chunk=chunk):
                results += part
                yield None
        for start in range(0, len(mids), chunk) if action not in ACTIONS else ():
            for mid in mids[start:start + chunk]:
                if action == "delay":
                    results.append(self.delay(caller, mid, delay or "24h", quarantine))
                elif action == "move":
                    if not quarantine or not target:
                        raise QuarantineError("move needs a source and a target quarantine")
                    results.append(self.move(caller, mid, quarantine, target))
                elif action == "copy":
                    results.append(self.copy(caller, mid, address or ""))
                else:
                    raise QuarantineError(f"unknown action {action!r}")
            yield None
        yield {"dry_run": False, "action": action, "count": len(mids),
               "done": sum(1 for r in results if r.ok),
               "results": [r.as_dict() for r in results]}

    # -- saved searches -----------------------------------------------------
    def save_search(self, caller: Caller, name: str, query: SearchQuery) -> None:
        roles.check(caller, "saved_search")
        with self.store.engine.begin() as conn:
            conn.execute(delete(saved_searches).where(saved_searches.c.owner == caller.actor,
                                                      saved_searches.c.name == name))
            conn.execute(saved_searches.insert().values(owner=caller.actor, name=name,
                                                        query=query.to_json(),
                                                        created_at=self.clock()))
        self.audit.append(caller.actor, caller.origin, "save-search", {"name": name})

    def saved_searches(self, caller: Caller) -> dict[str, SearchQuery]:
        roles.check(caller, "saved_search")
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(saved_searches.c.name, saved_searches.c.query)
                                .where(saved_searches.c.owner == caller.actor)
                                .order_by(saved_searches.c.name)).all()
        return {n: SearchQuery.from_json(q) for n, q in rows}

    def delete_search(self, caller: Caller, name: str) -> bool:
        roles.check(caller, "saved_search")
        with self.store.engine.begin() as conn:
            gone = conn.execute(delete(saved_searches).where(
                saved_searches.c.owner == caller.actor, saved_searches.c.name == name)).rowcount
        return bool(gone)

    # -- dry rescan --------------------------------------------------------------
    async def rescan(self, caller: Caller, mid: int) -> dict[str, Any]:
        """Have the gateway *mid* came from scan it with today's filters, anti-virus and
        outbreak rules, and return the verdict per stage; nothing changes anywhere (the
        audit trail gets a "rescanned (dry run)" record)."""
        self._authorize(caller, "rescan")
        record = self.store.get(mid) if valid_mid(mid) else None
        if record is None:
            raise QuarantineError(f"No message with MID {mid} in the quarantines.")
        self._check_quarantines(caller, [q["quarantine"] for q in record["quarantines"]])
        if record["state"] != HELD:
            raise Conflict(f"MID {mid} is no longer held ({record['state']}): "
                           "there is nothing to rescan")
        if self.rescanner is None:
            raise Conflict("dry rescans are made by a running manager, over CPQ")
        try:
            verdict = await self.rescanner.rescan(record, self.store.read_body(mid))
        except OperatorError as exc:
            self.audit.append(caller.actor, caller.origin, "rescan",
                              {"mid": mid, "dry_run": True, "error": str(exc)})
            self.log(f"MID {mid} rescanned (dry run): failed: {printable(exc)}")
            raise
        self.audit.append(caller.actor, caller.origin, "rescan", {
            "mid": mid, "dry_run": True, "gateway": verdict["gateway"],
            "action": verdict["action"],
            "verdicts": [f"{v['quarantine']} ({v['reason']})" for v in verdict["verdicts"]]})
        self.log(f"MID {mid} rescanned (dry run) by {printable(verdict['gateway'])}: "
                 f"{printable(verdict['action']).upper()}")
        return {"mid": mid, "dry_run": True, **verdict}

    # -- release receipts ------------------------------------------------------
    def record_receipt(self, receipt: ReleaseReceipt, peer: str) -> Recorded:
        """A gateway's release receipt (`quarantine.receipts`): stored once per recipient;
        the audit trail gets a record of what was new, in the gateway's name."""
        return self.receipts.record(receipt, also=self._audit_receipt(receipt, peer))

    def record_receipts(self, receipts: list[tuple[ReleaseReceipt, str]]
                        ) -> list[Recorded | Exception]:
        """`record_receipt` for receipts arriving together `(receipt, peer)`: one
        transaction for all; if it fails, each is recorded alone, so that a failure is
        only its own (the error in its place)."""
        try:
            return list(self.receipts.record_many(
                [(r, self._audit_receipt(r, peer)) for r, peer in receipts]))
        except Exception:
            results: list[Recorded | Exception] = []
            for receipt, peer in receipts:
                try:
                    results.append(self.record_receipt(receipt, peer))
                except Exception as exc:
                    results.append(exc)
            return results

    def _audit_receipt(self, receipt: ReleaseReceipt, peer: str
                       ) -> Callable[[Connection, list[ReceiptOutcome]], None]:
        def audited(conn: Connection, new: list[ReceiptOutcome]) -> None:
            # In the receipt's own transaction: one commit for the rows and the record.
            self.audit.append(receipt.origin.hostname, peer, "receipt", {
                "mid": receipt.message, "entry": receipt.entry,
                "receipt": receipt.transfer_id, "gateway_mid": receipt.origin.mid,
                "outcomes": [{"rid": o.rid, "address": o.address, "outcome": o.outcome.value,
                              "host": o.host, "reply": o.reply, "at": o.at} for o in new]},
                conn=conn)
        return audited

    # -- expiry, deleted quarantines, overflow ----------------------------------
    def apply_default(self, mid: int, quarantine: str, default_action: str, how: str,
                      caller: Caller = SYSTEM) -> bool:
        """Apply a quarantine's default action to *mid* (one manager process wins); the
        audit trail names *caller* (the scheduler, or the operator who ran `expire`)."""
        state = RELEASED if default_action == RELEASE else DELETED
        received = self._received_at(mid)
        try:
            outcome = self.store.act(mid, state, quarantine, how=how)
        except QuarantineError:
            return False  # another manager process got there first
        self.audit.append(caller.actor, caller.origin, default_action,
                          {"mid": mid, "quarantines": list(outcome.acted_on), "how": how})
        if outcome.settled == RELEASED:
            self.receipts.released([(mid, mid)], caller.actor, caller.origin, how)
        self._after(mid, state, outcome.acted_on, outcome.settled, how, received)
        return True

    def expire(self, now: float | None = None, *, batch: int = 1000,
               max_batches: int | None = None, caller: Caller = SYSTEM) -> int:
        """Apply the default action to every message past its scheduled exit (*caller*: who
        asked, for the audit trail; the scheduler by default)."""
        now = self.clock() if now is None else now
        done = 0
        batches = 0
        while True:
            due = self.store.due(now, limit=batch)
            acted = sum(self.apply_default(mid, q, action, "expired", caller)
                        for mid, q, action in due)
            done += acted
            batches += 1
            if len(due) < batch or acted == 0 or (max_batches and batches >= max_batches):
                return done

    def apply_deleted_quarantines(self, pending: list[tuple[int, str, str]]) -> int:
        """The default action for the messages of quarantines that were deleted."""
        return sum(self.apply_default(mid, q, action, "quarantine deleted")
                   for mid, q, action in pending)

    def make_room(self, size: int, quarantines: list[str]) -> bool:
        """Room for a message of *size* bytes, freeing space by the overflow rule if needed.

        False when the quota would be exceeded and nothing may be freed: the
        caller answers CPQ with a temporary error and the gateway keeps the mail.
        """
        if self.quota_bytes <= 0:
            return True
        used = self.store.used_bytes()
        need = used + size - self.quota_bytes
        if need > 0:
            chosen = choose_overflow(self.store.overflow_candidates(), need)
            if chosen is None:
                self.log(f"Quarantine space full: {used} of {self.quota_bytes} bytes used, "
                         f"nothing may be freed; a message of {size} bytes must wait")
                return False
            for mid in chosen:
                for name in self.store.held_in(mid):
                    self.apply_default(mid, name, self.store.default_action(name),
                                       "queue full")
            used = self.store.used_bytes()
        after = percent_full(used + size, self.quota_bytes)
        crossed = crossed_threshold(percent_full(used, self.quota_bytes), after)
        if crossed is not None:
            for name in quarantines:
                self.log(f'Quarantine "{name}" is {after}% full')
        return True


_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN = re.compile(r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)*[^\W_](?:[\w-]{0,61}[^\W_])?")


def copy_address_fault(address: str) -> str | None:
    """Why a Send Copy to *address* could never be delivered, or None.

    The copy travels to the gateway over CPQ and then out as `RCPT TO`:
    an address a listener would refuse would wait on `the.cpq.release.host`
    for ever (CPQ destinations hold, never bounce), so it is refused here, at
    once: a plain `local@domain` (dot-atom local part, a domain of labels),
    within the listeners' length and character bounds.
    """
    fault = address_fault(address)
    if fault is not None:
        return fault
    local, at, domain = address.rpartition("@")
    if not at or not _ATOM.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        return "expected local@domain"
    return None
