"""The gateway's own operator commands: pipeline, outbreak rules, work queue, PVO check.

Each `CommandSet` is given only what its commands use (see
`admin.registry`); `Gateway` registers them on its admin socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pvoq.admin.protocol import CommandError
from pvoq.admin.registry import CommandSet, command
from pvoq.config.model import Config, ManagerRecord
from pvoq.cpq.ca import certificate_problem
from pvoq.cpq.client import CpqConnection
from pvoq.cpq.transfer import RescanAction
from pvoq.delivery.queue import Destination
from pvoq.gateway.outbreak import OutbreakRules
from pvoq.gateway.processing import ScanEngines
from pvoq.gateway.workqueue import WorkQueue
from pvoq.maillog import MailLog
from pvoq.smtp.client import DeliveryError


class PipelineCommands(CommandSet):
    """`pipeline.show`, `outbreak.reload`, `outbreak.rescan`."""

    def __init__(self, config: Callable[[], Config], engines: ScanEngines,
                 rules: OutbreakRules) -> None:
        self.config, self.engines, self.rules = config, engines, rules

    @command("pipeline.show")
    async def show(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"data": {"hostname": self.config().hostname,
                         "stages": self.engines.pipeline.describe()}}

    @command("outbreak.reload")
    async def reload(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"text": await self.rules.reload()}

    @command("outbreak.rescan")
    async def rescan(self, args: dict[str, Any]) -> dict[str, Any]:
        decisions = await self.rules.rescan()
        counts = {a: sum(d.action == a for d in decisions) for a in RescanAction}
        return {"text": f"{len(decisions)} kept messages rescanned: " + ", ".join(
            f"{n} {a}" for a, n in counts.items()) + "."}


class WorkQueueCommands(CommandSet):
    """`workqueue.status`, `workqueue.pause`, `workqueue.resume`."""

    def __init__(self, workqueue: WorkQueue, maillog: MailLog) -> None:
        self.workqueue, self.maillog = workqueue, maillog

    @command("workqueue.status")
    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        status = "Paused by admin" if self.workqueue.paused else "Operating normally"
        count = self.workqueue.depth
        return {"text": f"Status: {status}\nMessages: {count}",
                "data": {"status": status, "messages": count}}

    @command("workqueue.pause")
    async def pause(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.workqueue.pause():
            return {"text": "The work queue is already paused."}
        self.maillog.info("Work queue paused by operator")
        return {"text": "Work queue paused. Received mail waits, unscanned, in the spool."}

    @command("workqueue.resume")
    async def resume(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.workqueue.resume():
            return {"text": "The work queue is not paused."}
        self.maillog.info("Work queue resumed by operator")
        return {"text": "Work queue resumed."}


class PvoCheckCommands(CommandSet):
    """`pvo.check`: the "Enable" readiness check, asked of each listed manager over CPQ.

    *manager* gives the CPQ destination of `the.cpq.host` for the configuration
    in force (its connections carry the TLS settings); each manager is checked
    on a connection of its own, verified against that manager's registered name.
    Ready when every listed manager answers ready; the text has a line per
    manager when there are several. The probe (`readiness`) runs whatever
    `<pvo_quarantines><enabled>` says: it is what `pvo.enable` asks first."""

    def __init__(self, config: Callable[[], Config],
                 manager: Callable[[], Destination]) -> None:
        self.config, self.manager = config, manager

    @command("pvo.check")
    async def check(self, args: dict[str, Any]) -> dict[str, Any]:
        """Ask each manager over CPQ whether centralized PVO can be enabled here."""
        ready, text, data = await self.readiness()
        if not ready:
            raise CommandError(f"Not ready: {text}")
        return {"text": f"Ready: {text}", "data": {"managers": data}}

    async def readiness(self) -> tuple[bool, str, list[dict[str, Any]]]:
        """(ready, what to say after "Ready: "/"Not ready: ", a row per manager)."""
        cfg = self.config()
        own = certificate_problem(cfg.cpq_certificate.certificate)
        if own:
            return False, f"gateway: {own}", []
        managers = cfg.pvo.all_managers
        if not managers:
            return False, ("no manager is configured (pvo_quarantines.managers)"), []
        results = [await self._check_one(m) for m in managers]
        data = [{"manager": m.hostname, "address": m.address, "port": m.port, "ready": ok,
                 "text": text} for m, (ok, text) in zip(managers, results, strict=True)]
        if len(results) == 1:
            ok, text = results[0]
            return ok, text, data
        lines = [f"{'Ready' if ok else 'Not ready'}: {text}" for ok, text in results]
        ready = sum(ok for ok, _ in results)
        summary = (f"{ready} of {len(results)} managers ready" if ready < len(results)
                   else f"all {len(results)} managers ready")
        return ready == len(results), summary + "\n" + "\n".join(lines), data

    async def _check_one(self, manager: ManagerRecord) -> tuple[bool, str]:
        """(ready, what to say) for one manager."""
        where = f"{manager.address}:{manager.port}"
        named = f"the manager {manager.hostname} at {where}" if len(
            self.config().pvo.all_managers) > 1 else f"the manager at {where}"
        conn = self.manager().connection()
        if isinstance(conn, CpqConnection):  # this manager alone, verified by its own name
            conn.peers, conn.expect_name = (), manager.hostname
        try:
            await conn.open(manager.address, manager.port)
            reply = await conn.command("XCPQ CHECK")
        except DeliveryError as exc:
            return False, f"{named} cannot be used: {exc.reason}"
        finally:
            await conn.close()
        if not reply.ok:
            return False, f"{named} answered: {reply.text}"
        return True, f"{named} answered: {reply.text}"
