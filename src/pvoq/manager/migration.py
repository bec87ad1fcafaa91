"""The migration wizard on the manager: move the gateways' local quarantines here.

`pvoq cli pvo migrate --mode automatic|custom [--map LOCAL@GATEWAY=CENTRAL|new]
[--dry-run] [--notify ADDRESS]` (admin command `pvo.migrate`, and the
console's Migration page) runs these steps:

1. **Survey.** Each registered gateway added over SSH is asked `pvo local`
   (`gateway.migration`): its mode, its local quarantines with counts and
   sizes, its cluster's layout, and the plan it runs, if any.
2. **The rules** (`check_rules`), before anything moves, each refusal naming
   the rule and the machine: a gateway is all local or all centralized
   (migration only after `pvo enable`); every machine of a gateway's cluster
   is registered here first; the PVO settings and the filters that
   quarantine sit at one level, with no override below it; the PVO interface
   exists on every machine.
3. **The plan** (`build_plan`): automatic merges each local quarantine into
   the central one of the same name, creating a custom quarantine where none
   matches; custom takes the `--map`s (`LOCAL@GATEWAY=CENTRAL`, or `=new`
   for a new central quarantine named like the local one), one for every
   local quarantine holding mail. Shown as a tree (`render_tree`): gateway →
   local quarantine (count) → central quarantine [new]. `--dry-run` stops
   there.
4. **Apply.** The new central quarantines are created (the configuration
   file, as `quarantine add` does), the plan is written to
   `<data_dir>/migration/plan.json`, and each gateway is told over SSH
   (`pvo migrate PLAN`); it keeps the plan too and pushes its messages over
   CPQ (kind `migration`). A watcher asks the gateways for their progress
   until every one has completed, then writes an Info line and, with
   `--notify`, spools a mail to that address. A restart of the manager
   resumes the watcher and tells the gateways the plan again (the same plan
   id: a gateway already running it just goes on).
5. **Cancel** (`pvo migrate --cancel`, `pvo.migrate.cancel`). The plan is
   marked cancelled here, then each gateway is told (`pvo migrate cancel
   ID`); it finishes the transfer under way and stops, and what it has not
   moved stays in its local quarantines. The watcher tells again a gateway it
   could not reach, and once every gateway has stopped the migration has
   ended (state `cancelled`, an Info line with what moved and what stayed,
   the `--notify` mail): a new one may then start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from pvoq.admin.protocol import CommandError, Peer
from pvoq.admin.registry import CommandSet, command
from pvoq.config.model import Config
from pvoq.cpq.transfer import Kind
from pvoq.fsutil import atomic_write
from pvoq.maillog import MailLog
from pvoq.quarantine.arrivals import Arrival
from pvoq.quarantine.receipts import printable
from pvoq.remote.client import SshClient
from pvoq.remote.commands import CENTRALIZED, encode_plan_arg
from pvoq.remote.keys import SshFault
from pvoq.smtp.limits import address_fault
from pvoq.spool.store import QUEUED, Entry, Recipient

PLAN_FILE = "plan.json"
POLL_S = 2.0            # how often the watcher asks the gateways for their progress
STOPPED = ("cancelled", "completed")  # a gateway's states once a cancelled plan ended there
NEW = "new"

RULE_MODE = "a gateway is all local or all centralized"
RULE_REGISTERED = "every machine of the cluster is registered on the manager first"
RULE_ONE_LEVEL = "PVO settings and quarantining filters sit at one level, no override below"
RULE_INTERFACE = "the PVO interface exists on every machine"


class MigrationError(CommandError):
    """A migration that cannot be planned or applied; the text names the field or rule."""


@dataclass(frozen=True)
class PlanRow:
    """One branch of the plan: a gateway's local quarantine and where it goes."""

    gateway: str
    local: str
    count: int
    bytes: int
    target: str
    new: bool  # the central quarantine is created by the migration


def parse_maps(maps: list[str]) -> dict[tuple[str, str], str]:
    """`LOCAL@GATEWAY=CENTRAL|new` each; `(local, gateway lowercased)` → target."""
    result: dict[tuple[str, str], str] = {}
    for raw in maps:
        left, eq, target = raw.rpartition("=")
        local, at, gateway = left.rpartition("@")
        if not (eq and at and local.strip() and gateway.strip() and target.strip()):
            raise MigrationError(f"--map {raw!r}: expected LOCAL@GATEWAY=CENTRAL or "
                                 "LOCAL@GATEWAY=new")
        key = (local.strip(), gateway.strip().lower())
        if key in result:
            raise MigrationError(f"--map {raw!r}: {local}@{gateway} is mapped twice")
        result[key] = target.strip()
    return result


def check_rules(config: Config, surveys: dict[str, dict[str, Any]]) -> list[str]:
    """Every rule a gateway breaks, `rule "...": machine ...: why`, each cluster once."""
    problems: list[str] = []
    seen_clusters: set[str] = set()
    for name, survey in sorted(surveys.items()):
        if survey.get("mode") != CENTRALIZED:
            problems.append(f'rule "{RULE_MODE}": gateway {name} is in '
                            f"{survey.get('mode')} mode: run `pvoq cli pvo enable` on it first")
        cluster = survey.get("cluster")
        if not isinstance(cluster, dict) or cluster.get("name") in seen_clusters:
            continue
        seen_clusters.add(str(cluster.get("name")))
        label = f"cluster {cluster.get('name')}"
        for machine in cluster.get("machines", []):
            if config.pvo.gateway(str(machine)) is None:
                problems.append(f'rule "{RULE_REGISTERED}": machine {machine} of {label} is '
                                "not registered on this manager (<pvo_quarantines><gateways>)")
        levels: dict[str, list[str]] = cluster.get("levels") or {}
        for tag, where in sorted(levels.items()):
            if len(where) > 1:
                below = ", ".join(where[1:])
                problems.append(f'rule "{RULE_ONE_LEVEL}": {label}: <{tag}> set at {where[0]} '
                                f"is overridden at {below}")
        kinds = {tag: where[0].split()[0] for tag, where in levels.items() if where}
        if len(set(kinds.values())) > 1:
            shown = ", ".join(f"<{t}> at {k} level" for t, k in sorted(kinds.items()))
            problems.append(f'rule "{RULE_ONE_LEVEL}": {label}: the sections are at '
                            f"different levels ({shown})")
        for problem in cluster.get("interface_problems", []):
            problems.append(f'rule "{RULE_INTERFACE}": {label}: {problem}')
    return problems


def build_plan(mode: str, surveys: dict[str, dict[str, Any]], central: set[str],
               maps: dict[tuple[str, str], str]) -> list[PlanRow]:
    """The plan's rows (see the module docstring); `MigrationError` naming the `--map`."""
    if mode not in ("automatic", "custom"):
        raise MigrationError(f"--mode must be automatic or custom, not {mode!r}")
    if mode == "automatic" and maps:
        raise MigrationError("--map is for --mode custom")
    rows: list[PlanRow] = []
    held = {(q["name"], gw.lower()) for gw, s in surveys.items() for q in s["quarantines"]}
    for local, gateway in maps:
        if (local, gateway) not in held:
            raise MigrationError(f"--map {local}@{gateway}: gateway {gateway} holds no local "
                                 f"quarantine {local!r} with messages")
    creating: set[str] = set()
    for gw, survey in sorted(surveys.items()):
        for q in survey["quarantines"]:
            local = str(q["name"])
            if mode == "automatic":
                target = local
            else:
                wanted = maps.get((local, gw.lower()))
                if wanted is None:
                    raise MigrationError(f"--map: no mapping for {local}@{gw} "
                                         f"({q['count']} messages); give "
                                         f"{local}@{gw}=CENTRAL or {local}@{gw}=new")
                if wanted == NEW:
                    if local in central:
                        raise MigrationError(f"--map {local}@{gw}=new: a central quarantine "
                                             f"{local!r} exists; map to it by name")
                    target = local
                elif wanted not in central:
                    raise MigrationError(f"--map {local}@{gw}={wanted}: no central quarantine "
                                         f"{wanted!r} (use =new to create one)")
                else:
                    target = wanted
            new = target not in central
            if new:
                creating.add(target)
            rows.append(PlanRow(gw, local, int(q["count"]), int(q["bytes"]), target, new))
    return rows


def render_tree(rows: list[PlanRow]) -> str:
    """gateway → local quarantine (count) → central quarantine [new], as text."""
    if not rows:
        return "Nothing to migrate: no gateway holds messages in local quarantines."
    lines = []
    for gw in sorted({r.gateway for r in rows}):
        mine = [r for r in rows if r.gateway == gw]
        lines.append(f"{gw} ({sum(r.count for r in mine)} messages)")
        for i, r in enumerate(mine):
            branch = "`--" if i == len(mine) - 1 else "|--"
            lines.append(f"  {branch} {printable(r.local)} ({r.count}) -> "
                         f"{printable(r.target)}{' [new]' if r.new else ''}")
    return "\n".join(lines)


class MigrationWizard:
    """The wizard's state and steps (see the module docstring).

    *ssh* asks the gateways; *create_quarantine(name, peer)* adds a central
    custom quarantine (the configuration file and a reload); *notify(address,
    subject, text)* spools a mail; *central* gives the central quarantines.
    """

    def __init__(self, *, config: Callable[[], Config], ssh: SshClient, data_dir: Path,
                 maillog: MailLog, central: Callable[[], set[str]],
                 create_quarantine: Callable[[str, Peer], Awaitable[Any]],
                 notify: Callable[[str, str, str], Any]) -> None:
        self.config = config
        self.ssh = ssh
        self.dir = data_dir / "migration"
        self.log = maillog
        self.central = central
        self.create_quarantine = create_quarantine
        self.notify = notify
        self.plan: dict[str, Any] | None = self._load()
        self.progress: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def _load(self) -> dict[str, Any] | None:
        try:
            plan = json.loads((self.dir / PLAN_FILE).read_bytes())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise MigrationError(f"{self.dir / PLAN_FILE}: not JSON ({exc})") from None
        return plan if isinstance(plan, dict) else None

    def _save(self) -> None:
        assert self.plan is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.dir / PLAN_FILE, json.dumps(self.plan, indent=1).encode())

    # -- steps --------------------------------------------------------------------
    async def survey(self) -> dict[str, dict[str, Any]]:
        """What each registered gateway holds; `MigrationError` naming one that cannot
        be asked."""
        cfg = self.config()
        names = [g.hostname for g in cfg.pvo.gateways]
        if not names:
            raise MigrationError("no gateway is registered on this manager")

        async def ask(name: str) -> dict[str, Any]:
            try:
                data = json.loads(await self.ssh.run(name, "pvo local"))
            except SshFault as exc:
                raise MigrationError(f"gateway {name}: cannot be asked over SSH: {exc}"
                                     ) from None
            except ValueError:
                raise MigrationError(f"gateway {name}: malformed answer to 'pvo local'"
                                     ) from None
            if not isinstance(data, dict) or not isinstance(data.get("quarantines"), list):
                raise MigrationError(f"gateway {name}: malformed answer to 'pvo local'")
            return data
        answers = await asyncio.gather(*(ask(n) for n in names))
        return dict(zip(names, answers, strict=True))

    async def prepare(self, mode: str, maps: list[str]) -> tuple[list[PlanRow], str]:
        """Survey, rules, plan: the rows and their tree; `MigrationError` when refused."""
        parsed = parse_maps(maps)
        surveys = await self.survey()
        problems = check_rules(self.config(), surveys)
        if problems:
            for p in problems:
                self.log.info(f"PVO migration refused: {p}")
            raise MigrationError("Migration refused:\n" + "\n".join(problems))
        rows = build_plan(mode, surveys, self.central(), parsed)
        return rows, render_tree(rows)

    async def migrate(self, peer: Peer, mode: str, maps: list[str], *, dry_run: bool,
                      notify: str | None) -> dict[str, Any]:
        """Plan, and unless *dry_run* apply: create, persist, tell the gateways."""
        if notify:
            fault = address_fault(notify)
            if fault is not None or "@" not in notify:
                raise MigrationError(f"--notify {notify!r}: not an address "
                                     f"({fault or 'no domain'})")
        async with self._lock:
            if self.plan is not None and not self.plan.get("completed"):
                raise MigrationError(f"migration {self.plan['id']} is still running "
                                     "(pvo migrate --status; pvo migrate --cancel stops it)")
            rows, tree = await self.prepare(mode, maps)
            if dry_run or not rows:
                return {"text": tree + ("\n(dry run: nothing was changed)" if dry_run else ""),
                        "data": {"rows": [asdict(r) for r in rows], "dry_run": dry_run}}
            for name in sorted({r.target for r in rows if r.new}):
                await self.create_quarantine(name, peer)
            self.plan = {"id": f"m{int(time.time())}-{secrets.token_hex(3)}", "mode": mode,
                         "rows": [asdict(r) for r in rows], "notify": notify or None,
                         "started": time.time(), "completed": None, "by": peer.actor}
            self._save()
            self.log.info(f"PVO migration {self.plan['id']} started by {peer.actor} "
                          f"({mode}): {sum(r.count for r in rows)} messages from "
                          f"{len({r.gateway for r in rows})} gateways")
            await self._tell_gateways()
            self._start_watcher()
        return {"text": tree + f"\nMigration {self.plan['id']} started.",
                "data": {"rows": self.plan["rows"], "id": self.plan["id"]}}

    def gateway_plan(self, gateway: str) -> dict[str, Any]:
        """What *gateway* is told: its local quarantines → their targets."""
        assert self.plan is not None
        return {"id": self.plan["id"], "manager": self.config().hostname,
                "targets": {r["local"]: r["target"] for r in self.plan["rows"]
                            if r["gateway"] == gateway}}

    async def _tell_gateways(self, only: set[str] | None = None) -> None:
        """Hand each gateway of the plan (or those of *only*) its plan, or once the plan
        is cancelled, the cancellation."""
        assert self.plan is not None
        for gw in sorted({r["gateway"] for r in self.plan["rows"]}):
            if only is not None and gw not in only:
                continue
            if self.plan.get("cancelled"):
                line = f"pvo migrate cancel {self.plan['id']}"
            else:
                line = f"pvo migrate {encode_plan_arg(self.gateway_plan(gw))}"
            try:
                await self.ssh.run(gw, line)
            except SshFault as exc:  # the watcher tells it again
                self.log.warning(f"PVO migration {self.plan['id']}: gateway {gw} not told "
                                 f"yet: {exc}")

    async def cancel(self, peer: Peer) -> dict[str, Any]:
        """Stop the migration under way: each gateway of the plan is told (`pvo migrate
        cancel ID` over SSH) and finishes the transfer under way; what was moved stays
        here, the rest stays in its local quarantines. The watcher tells the gateways it
        could not reach again, and the migration has ended once each one has stopped."""
        async with self._lock:
            plan = self.plan
            if plan is None or plan.get("completed"):
                raise MigrationError("no migration is running (pvo migrate --status)")
            if not plan.get("cancelled"):
                plan["cancelled"], plan["cancelled_by"] = time.time(), peer.actor
                self._save()
                self.log.info(f"PVO migration {plan['id']} cancelled by {peer.actor}")
            await self._tell_gateways()
            self._start_watcher()
        return {"text": f"Migration {plan['id']} cancelled: each gateway stops after the "
                        "transfer under way; what is not moved stays in its local quarantines "
                        "(pvo migrate --status).", "data": self.status()}

    # -- progress -----------------------------------------------------------------
    def resume(self) -> None:
        """After a restart: watch (and tell again) a plan that has not completed."""
        if self.plan is not None and not self.plan.get("completed"):
            self._start_watcher()

    def _start_watcher(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        assert self.plan is not None
        plan = self.plan
        told = False
        while True:
            done = await self._poll()
            if done:
                break
            if plan.get("cancelled"):  # until each one has heard it
                await self._tell_gateways({gw for gw, p in self.progress.items()
                                           if p.get("state") not in STOPPED})
            elif not told:  # once per start: a gateway that missed the plan takes it now
                await self._tell_gateways()
                told = True
            await asyncio.sleep(POLL_S)
        plan["completed"] = time.time()
        self._save()
        moved = sum(r["moved"] for g in self.progress.values() for r in g.get("rows", []))
        if plan.get("cancelled"):
            left = sum(r["total"] - r["moved"] for g in self.progress.values()
                       for r in g.get("rows", []))
            what = "cancelled"
            self.log.info(f"PVO migration {plan['id']} cancelled: {moved} messages moved from "
                          f"{len(self.progress)} gateways to the centralized quarantines, "
                          f"{left} left in their local quarantines")
        else:
            what = "completed"
            self.log.info(f"PVO migration {plan['id']} completed: {moved} messages moved from "
                          f"{len(self.progress)} gateways to the centralized quarantines")
        if plan.get("notify"):
            self.notify(plan["notify"], f"PVO migration {plan['id']} {what}",
                        self.status_text())

    async def _poll(self) -> bool:
        """Ask each gateway of the plan for its progress; whether all have completed."""
        assert self.plan is not None
        plan_id = self.plan["id"]
        complete = True
        for gw in sorted({r["gateway"] for r in self.plan["rows"]}):
            try:
                data = json.loads(await self.ssh.run(gw, "pvo local"))
                mine = data.get("migration") or {}
            except (SshFault, ValueError, AttributeError) as exc:
                self.progress.setdefault(gw, {})["fault"] = str(exc)
                complete = False
                continue
            if mine.get("id") != plan_id:
                self.progress[gw] = {"state": "not started", "rows": self._planned(gw)}
                # a cancelled plan a gateway never took: nothing of it to stop there
                complete = complete and bool(self.plan.get("cancelled"))
                continue
            self.progress[gw] = {"state": mine.get("state"),
                                 "rows": [{"local": q["local"], "target": q["target"],
                                           "moved": q["moved"], "total": q["total"]}
                                          for q in mine.get("quarantines", [])]}
            complete = complete and mine.get("state") in (
                STOPPED if self.plan.get("cancelled") else ("completed",))
        return complete

    def _planned(self, gw: str) -> list[dict[str, Any]]:
        assert self.plan is not None
        return [{"local": r["local"], "target": r["target"], "moved": 0, "total": r["count"]}
                for r in self.plan["rows"] if r["gateway"] == gw]

    def status(self) -> dict[str, Any]:
        plan = self.plan
        if plan is None:
            return {"state": "none"}
        gateways = {r["gateway"] for r in plan["rows"]}
        progress = {gw: self.progress.get(gw) or {"state": "unknown",
                                                  "rows": self._planned(gw)}
                    for gw in sorted(gateways)}
        if plan.get("cancelled"):
            state = "cancelled" if plan.get("completed") else "cancelling"
        else:
            state = "completed" if plan.get("completed") else "running"
        return {"id": plan["id"], "mode": plan["mode"], "state": state,
                "started": plan["started"], "completed": plan.get("completed"),
                "cancelled": plan.get("cancelled"), "cancelled_by": plan.get("cancelled_by"),
                "gateways": progress}

    def status_text(self) -> str:
        data = self.status()
        if data["state"] == "none":
            return "No migration has been started on this manager."
        lines = [f"Migration {data['id']} ({data['mode']}): {data['state']}"]
        for gw, p in data["gateways"].items():
            lines.append(f"{gw}: {p.get('state')}")
            for r in p.get("rows", []):
                lines.append(f"  {printable(r['local'])} -> {printable(r['target'])}: "
                             f"{r['moved']}/{r['total']} moved")
        return "\n".join(lines)


class MigrationCommands(CommandSet):
    """`pvo.migrate` and `pvo.migrate.status` on the manager."""

    def __init__(self, wizard: MigrationWizard) -> None:
        self.wizard = wizard

    @command("pvo.migrate", peer=True)
    async def migrate(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        if peer.role != "admin":
            raise MigrationError("only an administrator may migrate quarantines")
        maps = args.get("maps") or []
        if not isinstance(maps, list) or not all(isinstance(m, str) for m in maps):
            raise MigrationError("maps must be a list of LOCAL@GATEWAY=CENTRAL strings")
        notify = args.get("notify")
        return await self.wizard.migrate(peer, str(args.get("mode") or ""), maps,
                                         dry_run=bool(args.get("dry_run")),
                                         notify=str(notify) if notify else None)

    @command("pvo.migrate.cancel", peer=True)
    async def cancel(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        if peer.role != "admin":
            raise MigrationError("only an administrator may cancel a migration")
        return await self.wizard.cancel(peer)

    @command("pvo.migrate.status")
    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"text": self.wizard.status_text(), "data": self.wizard.status()}


def audit_hook(append: Callable[..., int]) -> Callable[[Connection, Sequence[Arrival]], None]:
    """The store's `on_batch`: the migrated messages of a batch recorded in the audit
    trail in the batch's own transaction (committed with their rows, or not at all), one
    `migrate-in` record per gateway of the batch: `mids`, and per message its local MID,
    the plan, the quarantines moved and `history`, the gateway's records of it.
    *append* is `AuditTrail.append`."""
    def record(conn: Connection, arrivals: Sequence[Arrival]) -> None:
        by_gateway: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for a in arrivals:
            meta = a.meta
            if meta.get("kind") != Kind.MIGRATION:
                continue
            migration = meta["migration"]
            by_gateway.setdefault((meta["origin"]["hostname"], a.origin_ip), []).append({
                "mid": a.mid, "origin_mid": meta["origin"]["mid"], "plan": migration["plan"],
                "quarantines": [{"from": h["local"], "to": h["target"]}
                                for h in migration["held"]],
                "history": migration.get("audit", [])})
        for (gateway, ip), moved in by_gateway.items():
            append(gateway, f"cpq {ip}", "migrate-in",
                   {"mids": [m["mid"] for m in moved], "migrated": moved}, conn=conn)
    return record


def notice_entry(*, mid: int, hostname: str, address: str, subject: str, text: str
                 ) -> tuple[Entry, bytes]:
    """The spool entry and body of a notification mail from this manager to *address*."""
    message = EmailMessage()
    message["From"] = f"pvoq@{hostname}"
    message["To"] = address
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=hostname)
    message.set_content(text + "\n")
    body = message.as_bytes()
    domain = address.rpartition("@")[2].lower()
    entry = Entry(mid=mid, sender="", recipients=[Recipient(0, address, host=domain)],
                  received=time.time(), size=len(body), state=QUEUED,
                  meta={"subject": subject})
    return entry, body
