"""The gateway's side of the migration wizard: push the locally held messages to the manager.

The manager's wizard (`manager.migration`) asks each gateway, over the SSH
command channel, what it holds locally (`pvo.local`: its mode, its local
quarantines with counts and sizes, its cluster's layout) and then tells it
to migrate (`pvo.migrate.start` with the plan: which local quarantine goes
to which central one). The gateway keeps the plan in
`<data_dir>/migration/plan.json` (written atomically before it answers), so
a restart resumes it, and pushes every message held in the planned local
quarantines over CPQ as a `migration` transfer (`quarantine.export`) on
`CONNECTIONS` connections at once, a chunk of messages at a time, each
connection carrying as many transfers under way as it takes (`in_flight`:
BDAT, pipelined, to a manager offering CHUNKING). A local
copy is removed only after the manager's `250` (`remove_moved`, one
transaction per chunk); a crash in between sends it again, and the manager,
which knows the transfer id, acknowledges it without a second copy. Any
other reply, or a lost connection, leaves the message held; it is sent again
after a back-off. When nothing planned is held any more the plan is marked
completed and an Info line says so.

Migration needs the gateway in centralized mode (after `pvo enable`): a
gateway is all local or all centralized, and new mail must not land in the
local quarantines being emptied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvoq.admin.protocol import CommandError
from pvoq.admin.registry import CommandSet, command
from pvoq.config.cluster import check_pvo_interface, machine_views, parse_layout
from pvoq.config.model import Config
from pvoq.config.xmltree import parse_xml
from pvoq.cpq.metadata import encode_chunks
from pvoq.fsutil import atomic_write
from pvoq.maillog import MailLog
from pvoq.remote.commands import CENTRALIZED, LOCAL, decode_plan_arg
from pvoq.smtp.client import DeliveryError, SmtpConnection

if TYPE_CHECKING:  # the database layer loads only when there is something to migrate
    from pvoq.quarantine.store import QuarantineStore

PLAN_FILE = "plan.json"
CONNECTIONS = 10     # connections to the manager at once (the cpq_listener takes 20 a peer)
CHUNK = 32           # messages exported, then removed, together
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0
# The sections holding the PVO settings and the filters that quarantine (cluster rule).
PVO_SECTIONS = ("pvo_quarantines", "message_filters", "content_filters", "outbreak_filters",
                "mail_policies")
START_NOTE = "to Centralized Policy Quarantine (migration)"
DONE_NOTE = "(migration to centralized policy quarantine)"

__all__ = ["CENTRALIZED", "LOCAL", "GatewayMigrationCommands", "LocalPlan", "Migrator",
           "PlanError", "cluster_facts"]


class PlanError(ValueError):
    """A migration plan the gateway cannot take; the text names the field."""


@dataclass
class LocalPlan:
    """The plan as this gateway keeps it: local quarantine → central one, and the counts."""

    id: str
    manager: str
    targets: dict[str, str]
    totals: dict[str, int] = field(default_factory=dict)
    started: float = 0.0
    completed: float | None = None
    cancelled: float | None = None  # told to stop: what is not moved yet stays here

    @classmethod
    def from_json(cls, obj: Any) -> LocalPlan:
        if not isinstance(obj, dict):
            raise PlanError("the plan is not a JSON object")
        plan_id, manager, targets = obj.get("id"), obj.get("manager"), obj.get("targets")
        if not isinstance(plan_id, str) or not 1 <= len(plan_id) <= 64:
            raise PlanError("field id must be a string of 1 to 64 characters")
        if not isinstance(manager, str) or not manager:
            raise PlanError("field manager must be a non-empty string")
        if not isinstance(targets, dict) or not targets or not all(
                isinstance(k, str) and isinstance(v, str) and k and v and len(v) <= 255
                for k, v in targets.items()):
            raise PlanError("field targets must map local quarantine names to central ones")
        totals = obj.get("totals") or {}
        if not isinstance(totals, dict) or not all(isinstance(v, int) for v in totals.values()):
            raise PlanError("field totals must map quarantine names to counts")
        completed, cancelled = obj.get("completed"), obj.get("cancelled")
        return cls(plan_id, manager, dict(targets), dict(totals),
                   float(obj.get("started") or 0.0),
                   float(completed) if isinstance(completed, int | float) else None,
                   float(cancelled) if isinstance(cancelled, int | float) else None)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "manager": self.manager, "targets": self.targets,
                "totals": self.totals, "started": self.started, "completed": self.completed,
                "cancelled": self.cancelled}

    @property
    def ended(self) -> bool:
        return self.completed is not None or self.cancelled is not None


def cluster_facts(config: Config) -> dict[str, Any] | None:
    """What the manager's cluster rules need of this gateway's cluster (None: not
    clustered): its machines, where each PVO section is set (cluster, group or machine
    level, per machine) and the machines lacking the PVO interface."""
    if config.cluster is None:
        return None
    layout = parse_layout(parse_xml(Path(config.path).read_bytes(), path=str(config.path)))
    if layout is None:
        return None
    levels: dict[str, list[str]] = {}
    for tag in PVO_SECTIONS:
        found = []
        if tag in layout.cluster:
            found.append("cluster")
        found += [f"group {g}" for g, sections in layout.groups.items() if tag in sections]
        found += [f"machine {m.name}" for m in layout.machines if tag in m.sections]
        if found:
            levels[tag] = found
    return {"name": layout.name, "machines": [m.name for m in layout.machines],
            "levels": levels, "interface_problems": check_pvo_interface(machine_views(layout))}


class Migrator:
    """Runs this gateway's migration plan (see the module docstring).

    *store* gives the local quarantine store (None: this gateway has none),
    *mode* says whether the gateway is `local` or `centralized`, *connect*
    makes a CPQ connection to the managers (verified, as `the.cpq.host`'s),
    *record* writes the local audit trail (actor, origin, action, detail).
    """

    def __init__(self, *, data_dir: Path, config: Callable[[], Config],
                 store: Callable[[], QuarantineStore | None], mode: Callable[[], str],
                 connect: Callable[[], SmtpConnection], maillog: MailLog,
                 record: Callable[[str, str, str, dict[str, Any]], Any] | None = None,
                 connections: int = CONNECTIONS) -> None:
        self.dir = data_dir / "migration"
        self.config = config
        self.store = store
        self.mode = mode
        self.connect = connect
        self.log = maillog
        self.record = record
        self.connections = connections
        self.plan: LocalPlan | None = self._load()
        self.moved = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()  # ends a back-off early (a cancellation)

    @property
    def path(self) -> Path:
        return self.dir / PLAN_FILE

    def _load(self) -> LocalPlan | None:
        try:
            return LocalPlan.from_json(json.loads(self.path.read_bytes()))
        except FileNotFoundError:
            return None
        except (ValueError, PlanError) as exc:
            raise PlanError(f"{self.path}: {exc}") from None

    def _save(self) -> None:
        assert self.plan is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(self.plan.to_json(), indent=1).encode())

    # -- what the manager asks ------------------------------------------------------
    def survey(self) -> dict[str, Any]:
        """`pvo.local`: the mode, the local quarantines (count, bytes), cluster, plan."""
        cfg = self.config()
        store = self.store()
        counts = store.counts() if store is not None else {}
        return {"hostname": cfg.hostname, "serial": cfg.serial_number, "mode": self.mode(),
                "quarantines": [{"name": n, "count": c, "bytes": b}
                                for n, (c, b) in sorted(counts.items()) if c],
                "cluster": cluster_facts(cfg), "migration": self.status()}

    def status(self) -> dict[str, Any] | None:
        """The plan's progress per local quarantine: total, moved, left."""
        plan = self.plan
        if plan is None:
            return None
        store = self.store()
        counts = store.counts() if store is not None else {}
        rows = []
        for local, target in sorted(plan.targets.items()):
            left = counts.get(local, (0, 0))[0]
            total = max(plan.totals.get(local, 0), left)
            rows.append({"local": local, "target": target, "total": total,
                         "moved": total - left, "left": left})
        if plan.completed:
            state = "completed"
        elif plan.cancelled:
            state = "cancelling" if self.running else "cancelled"
        else:
            state = "running" if self.running else "waiting"
        return {"id": plan.id, "manager": plan.manager, "state": state,
                "started": plan.started, "completed": plan.completed,
                "cancelled": plan.cancelled, "quarantines": rows}

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, raw: Any) -> dict[str, Any]:
        """`pvo.migrate.start`: take the plan (persisted first), start pushing."""
        if self.mode() != CENTRALIZED:
            raise PlanError(f'rule "a gateway is all local or all centralized": gateway '
                            f"{self.config().hostname} is in {self.mode()} mode; run "
                            "`pvoq cli pvo enable` on it first")
        plan = LocalPlan.from_json(raw)
        if self.plan is not None and self.plan.id == plan.id:
            self.resume()  # the manager asking again (after its restart): same plan
            return self.status() or {}
        if self.running:
            assert self.plan is not None
            raise PlanError(f"migration {self.plan.id} is still running here")
        store = self.store()
        if store is None:
            raise PlanError(f"gateway {self.config().hostname} has no local quarantines")
        counts = store.counts()
        unknown = [q for q in plan.targets if q not in counts and q not in store.settings]
        if unknown:
            raise PlanError(f"field targets: no local quarantine {unknown[0]!r} here")
        plan.totals = {q: counts.get(q, (0, 0))[0] for q in plan.targets}
        plan.started, plan.completed = time.time(), None
        self.plan = plan
        self._save()
        self.log.info(f"PVO migration {plan.id} started by {plan.manager}: " + ", ".join(
            f'"{q}" ({plan.totals[q]}) to "{t}"' for q, t in sorted(plan.targets.items())))
        self.resume()
        return self.status() or {}

    def resume(self) -> None:
        """Run the plan kept in the data directory, unless it ended or is running."""
        if self.plan is None or self.plan.ended or self.running:
            return
        self._task = asyncio.ensure_future(self._run())

    def cancel(self, plan_id: str) -> dict[str, Any]:
        """`pvo.migrate.cancel`: stop pushing *plan_id*. The transfer under way on each
        connection finishes (so no message is both moved and kept); what is left stays
        in the local quarantines. The plan is saved as cancelled first, so a restart does
        not resume it. Cancelling a plan that ended, or that never reached this gateway,
        changes nothing."""
        plan = self.plan
        if plan is None or plan.id != plan_id:
            return {"id": plan_id, "state": "not started"}
        if not plan.ended:
            plan.cancelled = time.time()
            self._save()
            self._wake.set()
            if not self.running:
                self._log_cancelled(plan)
        return self.status() or {}

    def _log_cancelled(self, plan: LocalPlan) -> None:
        rows = (self.status() or {}).get("quarantines", [])
        self.log.info(f"PVO migration {plan.id} cancelled by {plan.manager}: "
                      f"{sum(r['moved'] for r in rows)} messages moved, "
                      f"{sum(r['left'] for r in rows)} left in the local quarantines")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- the push -------------------------------------------------------------------
    async def _run(self) -> None:
        from pvoq.quarantine.export import audit_history, held_in

        plan = self.plan
        store = self.store()
        assert plan is not None
        if store is None:
            self.log.warning(f"PVO migration {plan.id} waits: no local quarantine store")
            return
        delay = RETRY_MIN_S
        while True:
            if plan.cancelled:
                self._task = None  # `status` says cancelled from here on
                self._log_cancelled(plan)
                return
            mids = await asyncio.to_thread(held_in, store, list(plan.targets))
            if not mids:
                break
            history = await asyncio.to_thread(audit_history, store, mids)
            pending: asyncio.Queue[list[int]] = asyncio.Queue()
            for i in range(0, len(mids), CHUNK):
                pending.put_nowait(mids[i:i + CHUNK])
            workers = [asyncio.ensure_future(self._worker(store, plan, pending, history))
                       for _ in range(min(self.connections, pending.qsize()))]
            results = await asyncio.gather(*workers)
            if all(results):
                delay = RETRY_MIN_S
                continue  # anything held meanwhile (or left) is looked for again
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            delay = min(delay * 2, RETRY_MAX_S)
        plan.completed = time.time()
        self._save()
        total = sum(plan.totals.values())
        self.log.info(f"PVO migration {plan.id} completed: {total} messages moved from the "
                      f"local quarantines to the centralized quarantines of {plan.manager}")

    async def _worker(self, store: QuarantineStore, plan: LocalPlan,
                      pending: asyncio.Queue[list[int]],
                      history: dict[int, list[dict[str, Any]]]) -> bool:
        """Send chunks until none is left; False when something had to stay for later."""
        cfg = self.config()
        managers = cfg.pvo.all_managers
        conn: SmtpConnection | None = None
        try:
            while not pending.empty() and not plan.cancelled:
                chunk = pending.get_nowait()
                if conn is None:
                    conn = self.connect()
                    try:
                        await conn.open(managers[0].address, managers[0].port)
                    except DeliveryError as exc:
                        self.log.info(f"PVO migration {plan.id}: the manager cannot be "
                                      f"reached: {exc.reason}; trying again")
                        conn = None
                        return False
                done, ok = await self._send_chunk(conn, store, plan, chunk, history)
                if done:
                    await asyncio.to_thread(self._remove, store, plan, done)
                    self.moved += len(done)
                if not ok:
                    return False  # what is left is looked for again after a back-off
        finally:
            if conn is not None:
                await conn.close()
        return True

    def _remove(self, store: QuarantineStore, plan: LocalPlan, done: list[int]) -> None:
        """Drop the acknowledged local copies, and say so in the local audit trail."""
        from pvoq.quarantine.export import remove_moved

        remove_moved(store, done)
        if self.record is not None:
            self.record("system", f"migration {plan.id}", "migrate",
                        {"mids": done, "to": plan.manager})

    async def _send_chunk(self, conn: SmtpConnection, store: QuarantineStore, plan: LocalPlan,
                          chunk: list[int], history: dict[int, list[dict[str, Any]]]
                          ) -> tuple[list[int], bool]:
        from pvoq.quarantine.export import export_messages

        cfg = self.config()

        def export() -> list[tuple[int, Any, bytes]]:
            return export_messages(store, chunk, targets=plan.targets, hostname=cfg.hostname,
                                   serial=cfg.serial_number, plan=plan.id, history=history)

        exported = iter(await asyncio.to_thread(export))
        done: list[int] = []
        stopped: list[bool] = []  # a refusal or a broken link: the lanes stop

        async def lane() -> None:  # one of the transfers under way on the connection
            for mid, transfer, body in exported:
                if plan.cancelled or stopped:
                    return  # what was sent stays sent; the rest stays here
                try:
                    replies = await conn.send(
                        mid=mid, sender=transfer.sender,
                        recipients=[(r.rid, r.address) for r in transfer.recipients],
                        body=body,
                        extra=[f"XCPQ META {c}" for c in encode_chunks(transfer.to_json())],
                        start_note=START_NOTE, done_note=DONE_NOTE)
                except DeliveryError as exc:
                    self.log.info(f"MID {mid} migration {transfer.transfer_id} interrupted: "
                                  f"{exc.reason}; kept here, sent again")
                    stopped.append(True)
                    return
                reply = next(iter(replies.values()))
                if not reply.ok:
                    self.log.info(f"MID {mid} migration {transfer.transfer_id} not taken by "
                                  f"the manager: {reply.code} {reply.text}; kept here, sent "
                                  "again")
                    stopped.append(True)
                    return
                done.append(mid)

        # As many transfers under way at once as the connection takes (BDAT, pipelined).
        await asyncio.gather(*(lane() for _ in range(conn.in_flight)))
        return done, not stopped


class GatewayMigrationCommands(CommandSet):
    """`pvo.local` (what the manager's wizard asks) and `pvo.migrate.start`."""

    def __init__(self, migrator: Migrator) -> None:
        self.migrator = migrator

    @command("pvo.local")
    async def local(self, args: dict[str, Any]) -> dict[str, Any]:
        data = await asyncio.to_thread(self.migrator.survey)
        lines = [f"Mode: {data['mode']}"] + [
            f"  {q['name']}: {q['count']} messages, {q['bytes']} bytes"
            for q in data["quarantines"]]
        return {"text": "\n".join(lines), "data": data}

    @command("pvo.migrate.start")
    async def start(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            status = self.migrator.start(decode_plan_arg(args))
        except (PlanError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        return {"text": f"Migration {status.get('id')} {status.get('state')}.", "data": status}

    @command("pvo.migrate.cancel")
    async def cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        argv = args.get("argv") if "argv" in args else [args.get("id")]
        if not isinstance(argv, list) or len(argv) != 1 or not isinstance(argv[0], str) \
                or not 1 <= len(argv[0]) <= 64:
            raise CommandError("pvo migrate cancel takes one argument: the plan id")
        status = self.migrator.cancel(argv[0])
        return {"text": f"Migration {status.get('id')} {status.get('state')}.", "data": status}
