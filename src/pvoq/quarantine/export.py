"""Moving held messages from one quarantine store to another (the migration wizard).

A gateway's local quarantines and the manager's central ones are the same
`QuarantineStore`; a migration takes a message out of the first with
everything it carries and puts it into the second:

- `audit_history`: the local audit records naming each message (`mid`,
  `mids`, `new_mid` in their details), oldest first, at most `MAX_AUDIT`;
- `export_message` (`export_messages`, a chunk): one held message as a
  `MigrationTransfer` (its reasons
  per local quarantine, the central quarantine each goes to, its arrival
  time, retention clock and scheduled exit, its audit history) and its body;
- `migration_arrival`: on the manager, the `Arrival` that stores such a
  transfer with its clocks kept (not restarted at the manager's commit);
- `remove_moved`: on the gateway, drop the local copies the manager
  acknowledged (deleted with `how="migrated"`, bodies removed).

The transfer id is `migration-<serial>-<local MID>`: the same for every
resend, so the manager stores a message once however often it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select

from pvoq.cpq.transfer import (
    MAX_AUDIT,
    MigratedHold,
    MigrationPart,
    MigrationTransfer,
    Origin,
    QuarantineRef,
    TransferRecipient,
    fit_text,
)
from pvoq.quarantine.arrivals import Arrival
from pvoq.quarantine.schema import audit, messages
from pvoq.quarantine.schema import message_quarantines as mq
from pvoq.quarantine.states import State
from pvoq.quarantine.store import QuarantineStore

HOW = "migrated"


def transfer_id(serial: str, mid: int) -> str:
    """The migration transfer id of local MID *mid* on the gateway of *serial*."""
    return f"migration-{serial}-{mid}"


def _mids_of(detail: Any) -> set[int]:
    if not isinstance(detail, dict):
        return set()
    found: set[int] = set()
    for key in ("mid", "new_mid", "copy_mid"):
        if isinstance(detail.get(key), int):
            found.add(detail[key])
    if isinstance(detail.get("mids"), list):
        found.update(m for m in detail["mids"] if isinstance(m, int))
    return found


def audit_history(store: QuarantineStore, mids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """The audit records naming each of *mids*, oldest first (the newest `MAX_AUDIT`).

    One pass over the trail, whatever the number of messages."""
    wanted = set(mids)
    found: dict[int, list[dict[str, Any]]] = {m: [] for m in wanted}
    with store.engine.connect() as conn:
        rows = conn.execute(select(audit.c.seq, audit.c.at, audit.c.actor, audit.c.origin,
                                   audit.c.action, audit.c.detail).order_by(audit.c.seq))
        for seq, at, actor, origin, action, text in rows:
            try:
                detail = json.loads(text)
            except ValueError:
                continue
            hits = _mids_of(detail) & wanted
            if not hits:
                continue
            record = {"seq": int(seq), "at": float(at), "actor": actor, "origin": origin,
                      "action": action, "detail": detail}
            for mid in hits:
                found[mid].append(record)
    return {m: r[-MAX_AUDIT:] for m, r in found.items()}


def export_message(store: QuarantineStore, mid: int, *, targets: Mapping[str, str],
                   hostname: str, serial: str, plan: str,
                   history: list[dict[str, Any]] | None = None
                   ) -> tuple[MigrationTransfer, bytes] | None:
    """Held message *mid* as a migration transfer and its body; None when no quarantine
    holds it any more. *targets* maps each local quarantine to its central one (a
    local quarantine it does not name keeps its own name)."""
    found = export_messages(store, [mid], targets=targets, hostname=hostname, serial=serial,
                            plan=plan, history={mid: history or []})
    return (found[0][1], found[0][2]) if found else None


def export_messages(store: QuarantineStore, mids: list[int], *, targets: Mapping[str, str],
                    hostname: str, serial: str, plan: str,
                    history: Mapping[int, list[dict[str, Any]]] | None = None
                    ) -> list[tuple[int, MigrationTransfer, bytes]]:
    """`export_message` for a chunk of MIDs, in two queries: `(mid, transfer, body)` for
    each one still held, in the order given."""
    held: dict[int, list[dict[str, Any]]] = {}
    with store.engine.connect() as conn:
        rows = {int(r["id"]): dict(r) for r in conn.execute(
            select(messages).where(messages.c.id.in_(mids), messages.c.state == State.HELD)
        ).mappings()}
        if rows:
            for q in conn.execute(select(mq).where(
                    mq.c.message_id.in_(list(rows)), mq.c.state == State.HELD)
                    .order_by(mq.c.message_id, mq.c.quarantine)).mappings():
                held.setdefault(int(q["message_id"]), []).append(dict(q))
    out = []
    for mid in mids:
        record = rows.get(mid)
        if record is None or not held.get(mid):
            continue
        transfer = _transfer(record, held[mid], targets=targets, hostname=hostname,
                             serial=serial, plan=plan, history=(history or {}).get(mid, []),
                             size=int(record["size"]))
        out.append((mid, transfer, store.read_body(mid)))
    return out


def _transfer(record: dict[str, Any], held: list[dict[str, Any]], *,
              targets: Mapping[str, str], hostname: str, serial: str, plan: str,
              history: list[dict[str, Any]], size: int) -> MigrationTransfer:
    mid = int(record["id"])
    meta = json.loads(record["meta"] or "{}")
    by_name = {str(q.get("name")): q for q in meta.get("quarantines", [])
               if isinstance(q, dict)}
    holds = tuple(MigratedHold(
        local=q["quarantine"], target=targets.get(q["quarantine"], q["quarantine"]),
        reason=fit_text(str(q["reason"])), stage=str(q["stage"] or "unknown"),
        received_at=float(q["received_at"]), scheduled_exit=float(q["scheduled_exit"]))
        for q in held)
    refs: dict[str, QuarantineRef] = {}
    for h in holds:
        if h.target not in refs:
            source = by_name.get(h.local, {})
            refs[h.target] = QuarantineRef(
                name=h.target, reason=h.reason, stage=h.stage,
                detail=source.get("detail") if isinstance(source.get("detail"), str) else None,
                threat_level=source.get("threat_level")
                if isinstance(source.get("threat_level"), int) else None)
    return MigrationTransfer(
        transfer_id=transfer_id(serial, mid),
        origin=Origin(hostname=hostname, serial=serial, mid=mid),
        sender=str(record["sender"]),
        recipients=tuple(TransferRecipient(int(r["rid"]), str(r["address"]))
                         for r in json.loads(record["recipients"])),
        quarantines=tuple(refs.values()), received=float(record["received_at"]), size=size,
        migration=MigrationPart(plan=plan, held=holds, audit=tuple(history)))


def migration_arrival(transfer: MigrationTransfer, mid: int, body: bytes, origin_ip: str,
                      subject: str) -> Arrival:
    """What the manager stores for *transfer*: its clocks kept, per target quarantine the
    earliest arrival and latest exit of the local quarantines merged into it."""
    times: dict[str, tuple[float, float]] = {}
    for h in transfer.migration.held:
        entered, leaves = times.get(h.target, (h.received_at, h.scheduled_exit))
        times[h.target] = (min(entered, h.received_at), max(leaves, h.scheduled_exit))
    return Arrival(mid, transfer.to_json(), body, origin_ip, subject,
                   received_at=transfer.received, held_times=times)


def remove_moved(store: QuarantineStore, mids: list[int]) -> int:
    """Remove the local copies of *mids*, acknowledged by the manager; how many went.

    Deleted from every quarantine (`how="migrated"`), then settled and their bodies
    removed; a crash in between leaves them claimed, which the store's recovery
    settles the same way."""
    outcomes = store.act_many(mids, State.DELETED, how=HOW)
    store.finish_many([(o.mid, State.DELETED) for o in outcomes if o.settled])
    return len(outcomes)


def held_in(store: QuarantineStore, quarantines: Iterable[str], limit: int = 100_000
            ) -> list[int]:
    """The MIDs held in any of *quarantines*, oldest first (at most *limit*)."""
    names = list(quarantines)
    if not names:
        return []
    with store.engine.connect() as conn:
        return [int(m) for (m,) in conn.execute(
            select(mq.c.message_id).where(mq.c.quarantine.in_(names), mq.c.state == State.HELD)
            .distinct().order_by(mq.c.message_id).limit(limit))]
