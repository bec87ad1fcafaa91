"""The gateway's own operator commands: pipeline, outbreak rules, work queue, PVO check.

Each `CommandSet` is given only what its commands use (see
`admin.registry`); `Gateway` registers them on its admin socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pvoq.admin.protocol import CommandError
from pvoq.admin.registry import CommandSet, command
from pvoq.config.model import Config
from pvoq.cpq.ca import certificate_problem
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
    """`pvo.check`: the "Enable" readiness check, asked of the manager over CPQ.

    *manager* gives the CPQ destination of `the.cpq.host` for the configuration
    in force."""

    def __init__(self, config: Callable[[], Config],
                 manager: Callable[[], Destination]) -> None:
        self.config, self.manager = config, manager

    @command("pvo.check")
    async def check(self, args: dict[str, Any]) -> dict[str, Any]:
        """Ask the manager over CPQ whether centralized PVO can be enabled here."""
        cfg = self.config()
        where = f"{cfg.pvo.manager_address}:{cfg.pvo.manager_port}"
        if not cfg.pvo.enabled:
            raise CommandError("Not ready: centralized PVO quarantines are disabled in this "
                               "gateway's configuration (pvo_quarantines.enabled)")
        own = certificate_problem(cfg.cpq_certificate.certificate)
        if own:
            raise CommandError(f"Not ready: gateway: {own}")
        conn = self.manager().connection()
        try:
            await conn.open(cfg.pvo.manager_address or "", cfg.pvo.manager_port)
            reply = await conn.command("XCPQ CHECK")
        except DeliveryError as exc:
            raise CommandError(f"Not ready: the manager at {where} cannot be used: "
                               f"{exc.reason}") from None
        finally:
            await conn.close()
        if not reply.ok:
            raise CommandError(f"Not ready: the manager at {where} answered: {reply.text}")
        return {"text": f"Ready: the manager at {where} answered: {reply.text}"}
