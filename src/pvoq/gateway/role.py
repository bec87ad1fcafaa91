"""The gateway role: receive, scan, deliver clean mail, ship caught mail.

Wires the parts: public listeners accept mail into the spool (fsync before
`250`, `gateway.handlers`) and submit it to the work queue
(`gateway.workqueue`), whose one hook scans each message
(`gateway.processing`) and hands the result to the router
(`gateway.router`): clean recipients go to their domain's queue, caught
messages to `the.cpq.host` (CPQ to the first listed manager that answers).
The `cpq_listener` receives releases from any listed manager (known by its
certificate's name), which re-enter the pipeline after the stage that
quarantined them and go downstream. The outbreak rules, their reloads and the
rescans of the kept copies are `gateway.outbreak`'s; the gateway's own
operator commands are `gateway.commands`'.

How the parts get in: `Gateway(config)` builds them, and its keyword
parameters *router* and *workqueue* say with what. Their inputs (spool,
mail_logs, ID counters, delivery queues) are made by `Appliance.__init__`, so
the gateway takes factories, not built parts: the `Router` and `WorkQueue`
classes themselves by default, or anything called the same way (a subclass,
a fake in a test). The delivery queues are built before the router, and
their bounce hook is bound to `Router.bounce` once it exists.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from pvoq.admin.lazy import LazyCommands
from pvoq.admin.registry import CommandSet
from pvoq.appliance import Appliance
from pvoq.config.model import THE_CPQ_HOST, Config, Listener
from pvoq.cpq.client import CpqDestination, CpqPeer, PeerBackoff
from pvoq.cpq.server import CpqSMTP
from pvoq.delivery.queue import DeliveryQueues, Destination
from pvoq.delivery.routes import SmtpRouteDestination
from pvoq.fsutil import atomic_write, remove_leftovers
from pvoq.gateway.commands import PipelineCommands, PvoCheckCommands, WorkQueueCommands
from pvoq.gateway.dryrun import DryRescan
from pvoq.gateway.enable import PvoModeCommands
from pvoq.gateway.handlers import PublicHandler, ReleaseHandler, transfer_marker
from pvoq.gateway.local import LocalQuarantines
from pvoq.gateway.outbreak import OutbreakRules
from pvoq.gateway.processing import Processor, ScanEngines
from pvoq.gateway.receipts import ReceiptBundler, Receipts
from pvoq.gateway.router import Router
from pvoq.gateway.workqueue import Dispose, GiveUp, WorkQueue
from pvoq.logsub.commands import LogChunkCommands
from pvoq.maillog import IdAllocator, MailLog
from pvoq.metrics.live import Metric, gateway_families
from pvoq.remote.commands import GatewayLinkCommands, ListenerInfoCommands
from pvoq.scan.keeper import OutbreakKeeper
from pvoq.scan.verdict import ScanError
from pvoq.smtp.server import (
    BaseHandler,
    PvoqSMTP,
)
from pvoq.spool.store import INCOMING, Entry, Spool
from pvoq.web.apiservice import ApiService

if TYPE_CHECKING:
    from pvoq.gateway.migration import Migrator
    from pvoq.remote.service import CommandService
    from pvoq.web.console.context import ConsoleContext

# A received release's id comes again only if its 250 was lost, at the manager's
# next retry: within its back-off, or when this gateway is back after an outage.
# A year covers any outage worth waiting out; the markers are empty files.
MARKER_LIFETIME_S = 365 * 86400.0
# The migration wizard's commands (`gateway.migration.GatewayMigrationCommands`) and the
# plan it keeps in the data directory: the module is loaded for either only.
MIGRATION_COMMANDS = ("pvo.local", "pvo.migrate.start", "pvo.migrate.cancel")
MIGRATION_PLAN = Path("migration") / "plan.json"


class RouterFactory(Protocol):
    """Makes the gateway's router (the `Router` class, by default)."""

    def __call__(self, *, config: Callable[[], Config], spool: Spool, maillog: MailLog,
                 ids: IdAllocator, queues: DeliveryQueues,
                 outbreak: OutbreakKeeper, local: LocalQuarantines | None = None) -> Router: ...


class WorkQueueFactory(Protocol):
    """Makes the gateway's work queue (the `WorkQueue` class, by default)."""

    def __call__(self, *, spool: Spool, maillog: MailLog, dispose: Dispose,
                 retry_s: Callable[[], float], unscannable: GiveUp | None = None,
                 max_failures: Callable[[], int] = ...) -> WorkQueue: ...


class Gateway(Appliance):
    """The gateway appliance: an `Appliance` with a work queue, a router and scanners.

    Parts, each given only what it uses:

    - `workqueue` (`WorkQueue`): incoming mail waits there; its hook is
      `processor.dispose`;
    - `processor` (`Processor`): scans a message in `engines.scanners` and
      routes it;
    - `router` (`Router`): acts on scan results, makes splits, copies and DSNs,
      and is the delivery queues' bounce hook;
    - `engines` (`ScanEngines`): the pipeline and scanner processes in force;
    - `outbreak` (`OutbreakKeeper`) and `rules` (`OutbreakRules`): the kept
      outbreak copies, the rules, their reloads and rescans;
    - `queues` (`DeliveryQueues`): routed mail, per destination host
      (`destination`), `the.cpq.host` being the manager;
    - `local` (`gateway.local.LocalQuarantines`): the local quarantines, built
      whatever the mode: `local.store` (`QuarantineStore` at
      `<data_dir>/quarantine.db`), `local.service` (`QuarantineService`, what
      `quarantine.*` commands and the API call), `local.releases` (its settler:
      releases go through this gateway's own pipeline and delivery).

    See the module docstring for how *router* and *workqueue* are injected.
    """

    role = "gateway"

    def __init__(self, config: Config, *, echo: TextIO | None = None,
                 router: RouterFactory = Router,
                 workqueue: WorkQueueFactory = WorkQueue) -> None:
        super().__init__(config, echo=echo)
        self.engines = ScanEngines(config.scan)
        self.outbreak = OutbreakKeeper(config.data_dir, self.maillog, hostname=config.hostname,
                                       serial=config.serial_number)
        self.transfers_dir = config.data_dir / "cpq_transfers"
        self.transfers_dir.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.transfers_dir)
        self._prune_transfer_markers()
        self.queues = DeliveryQueues(
            spool=self.spool, maillog=self.maillog, destination_for=self.destination,
            retry_min_s=config.delivery.retry_min_seconds,
            retry_max_s=config.delivery.retry_max_seconds,
            max_queue_lifetime_s=config.delivery.max_queue_lifetime_seconds,
            max_connections_per_host=config.delivery.max_connections_per_host,
            counters=self.counters)
        self._destinations: dict[str, Destination] = {}
        self.local = LocalQuarantines(config=self.current_config, spool=self.spool,
                                      ids=self.ids, maillog=self.maillog,
                                      marker=self.transfer_marker,
                                      submit=lambda e, b: self.workqueue.submit(e, b),
                                      on_built=self._register_local_commands)
        self._local_commands = False
        self.router = router(config=self.current_config, spool=self.spool,
                             maillog=self.maillog, ids=self.ids, queues=self.queues,
                             outbreak=self.outbreak, local=self.local)
        self.queues.on_bounce = self.router.bounce
        self.receipts = Receipts(config=self.current_config, spool=self.spool, ids=self.ids,
                                 queues=self.queues, maillog=self.maillog)
        self.queues.on_final = self.receipts.final
        self.queues.bundler = ReceiptBundler(self.current_config)  # receipts several to one
        self.processor = Processor(config=self.current_config, engines=self.engines,
                                   router=self.router, outbreak=self.outbreak,
                                   maillog=self.maillog)
        self.workqueue = workqueue(spool=self.spool, maillog=self.maillog,
                                   dispose=self.processor.dispose,
                                   retry_s=lambda: self.config.scan.retry_seconds,
                                   unscannable=self.processor.unscannable,
                                   max_failures=lambda: self.config.scan.max_temporary_failures)
        self.rules = OutbreakRules(config=self.current_config, engines=self.engines,
                                   keeper=self.outbreak, spool=self.spool, ids=self.ids,
                                   maillog=self.maillog, queues=self.queues,
                                   apply_locally=self.local.apply_notice)
        self._watcher: asyncio.Task[None] | None = None
        PipelineCommands(self.current_config, self.engines, self.rules).register(self.admin)
        WorkQueueCommands(self.workqueue, self.maillog).register(self.admin)
        check = PvoCheckCommands(self.current_config, lambda: self.destination(THE_CPQ_HOST))
        check.register(self.admin)
        self.pvo_mode = PvoModeCommands(self.current_config, self.reload, check.readiness,
                                        self.local.held_count, self.maillog)
        self.pvo_mode.register(self.admin)
        self.register_commands(incoming=self.workqueue)
        self.api = ApiService(config=self.current_config, service=lambda: self.local.service,
                              users=self.users, maillog=self.maillog)
        if self.local.needed():
            self._register_local_commands()
        # The migration wizard's gateway side (`gateway.migration`), loaded when the
        # manager first asks for it or when a plan is kept in the data directory.
        self._migrator: Migrator | None = None
        LazyCommands(MIGRATION_COMMANDS, self._migration_commands).register(self.admin)

    @property
    def migrator(self) -> Migrator:
        """The migration wizard's gateway side: push the local quarantines to the manager
        (the local store only when in use: a gateway that never held mail has none)."""
        if self._migrator is None:
            from pvoq.gateway.migration import Migrator

            self._migrator = Migrator(
                data_dir=self.config.data_dir, config=self.current_config,
                store=lambda: self.local.store if self.local.needed() else None,
                mode=self.local.mode,
                connect=lambda: self.destination(THE_CPQ_HOST).connection(),
                maillog=self.maillog,
                record=lambda *args, **kwargs: self.local.service.audit.append(*args, **kwargs))
        return self._migrator

    def _migration_commands(self) -> CommandSet:
        from pvoq.gateway.migration import GatewayMigrationCommands

        return GatewayMigrationCommands(self.migrator)

    def _register_local_commands(self) -> None:
        """The local quarantines answer the same commands as the manager's; registered once
        they are in use (the database layer is loaded only then)."""
        if self._local_commands:
            return
        self._local_commands = True
        from pvoq.quarantine.commands import QuarantineCommands
        from pvoq.quarantine.definitions import QuarantineConfigCommands
        from pvoq.quarantine.overview import OverviewCommands

        local = self.local
        QuarantineCommands(local.service).register(self.admin)
        QuarantineConfigCommands(lambda: self.config, self.reload, local.service.audit.append,
                                 local.store.held_count, self.maillog.info).register(self.admin)
        OverviewCommands(lambda: local.store.settings, local.store.engine,
                         lambda: local.service.quota_bytes).register(self.admin)

    def current_config(self) -> Config:
        """The configuration in force (a reload replaces it): what the parts read."""
        return self.config

    # -- received-transfer markers ----------------------------------------------------
    def _prune_transfer_markers(self, *, older_than_s: float = MARKER_LIFETIME_S) -> int:
        """Forget received transfer ids older than a year (see MARKER_LIFETIME_S)."""
        limit = time.time() - older_than_s
        pruned = 0
        for marker in self.transfers_dir.iterdir():
            if marker.is_file() and marker.stat().st_mtime < limit:
                marker.unlink()
                pruned += 1
        return pruned

    def transfer_marker(self, transfer_id: str) -> Path:
        return transfer_marker(self.transfers_dir, transfer_id)

    # -- wiring hooks of Appliance ----------------------------------------------------
    def handler_for(self, listener: Listener) -> tuple[BaseHandler, type[PvoqSMTP]]:
        if listener.is_cpq:
            return ReleaseHandler(self.context, config=self.current_config, spool=self.spool,
                                  marker=self.transfer_marker,
                                  submit=self.workqueue.submit,
                                  rescan=DryRescan(config=self.current_config,
                                                   engines=self.engines,
                                                   processor=self.processor,
                                                   maillog=self.maillog)), CpqSMTP
        return PublicHandler(self.context, spool=self.spool,
                             submit=self.workqueue.submit), PvoqSMTP

    def apply_config(self, config: Config) -> None:
        super().apply_config(config)
        old_rules = self.engines.pipeline.rules.current
        old_pipeline, old_scanners = self.engines.replace(config.scan)
        old_pipeline.close()
        stopping = asyncio.ensure_future(old_scanners.aclose())  # after their last answers
        self._background.add(stopping)
        stopping.add_done_callback(self._background.discard)
        if self.engines.pipeline.rules.current != old_rules:  # new rules: rescan the copies
            async def rescan() -> None:
                await self.rules.rescan()
            task = asyncio.ensure_future(rescan())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        self._destinations.clear()
        self.local.apply_config(config)

    def destination(self, host: str) -> Destination:
        """Where the delivery queue of *host* delivers: the manager over CPQ for
        `the.cpq.host`, SMTP routes otherwise (kept until a reload)."""
        found = self._destinations.get(host)
        if found is not None:
            return found
        cfg = self.config
        pvo_ip = self.interface_ip(cfg.pvo.interface_name)
        if host == THE_CPQ_HOST:
            # Every connection tries the managers in order, each skipped for its own
            # back-off after a failure; the address below only groups the batches.
            peers = [CpqPeer(m.address, m.port, m.hostname) for m in cfg.pvo.all_managers]
            first = (peers[0].host, peers[0].port) if peers else ("", cfg.pvo.manager_port)

            def resolve(entry: Entry) -> tuple[str, int]:
                # A release receipt goes to the manager the release came from first.
                wanted = (entry.meta.get("manager") or "").lower()
                return next(((p.host, p.port) for p in peers
                             if wanted and (p.name or "").lower() == wanted), first)
            found = CpqDestination(
                THE_CPQ_HOST, resolve=resolve, expect_role="manager",
                expect_name=cfg.pvo.manager_hostname, peers=peers,
                backoff=PeerBackoff(min_s=cfg.delivery.retry_min_seconds,
                                    max_s=cfg.delivery.retry_max_seconds),
                tls_context=self.client_tls, maillog=self.maillog, ids=self.ids,
                local_hostname=cfg.hostname, source_ip=pvo_ip,
                timeout_s=cfg.delivery.timeout_seconds)
        else:
            found = SmtpRouteDestination(host, settings=cfg.delivery, maillog=self.maillog,
                                         ids=self.ids, local_hostname=cfg.hostname,
                                         source_ip=None)
        self._destinations[host] = found
        return found

    async def recover(self) -> None:
        entries = self.spool.recover()
        for entry in entries:
            if entry.transfer_id:  # a crash between the spool commit and its marker
                marker = self.transfer_marker(entry.transfer_id)
                if not marker.exists():
                    atomic_write(marker, str(entry.mid).encode())
            if entry.state != INCOMING:
                self.queues.add(entry)
        self.workqueue.recover(self.local.recover([e for e in entries if e.state == INCOMING]))
        if entries:
            self.maillog.info(f"Recovered {len(entries)} messages from the spool")
        await self.rules.ship_notices()  # decisions a crash left in the outbox
        try:
            pids = await self.engines.scanners.start()
            self.maillog.info(f"Scanner processes started: pids {', '.join(map(str, pids))}")
        except (ScanError, OSError) as exc:  # scans wait in the spool; each batch retries
            self.maillog.critical(f"Scanner processes could not start: {exc}; received mail "
                                  f"waits in the spool")
        self.workqueue.start()
        self.local.start()
        if (self.config.data_dir / MIGRATION_PLAN).exists():
            self.migrator.resume()  # a plan a stop or crash interrupted
        self._watcher = asyncio.create_task(self.rules.watch(), name="outbreak-rules")

    # -- lifecycle ------------------------------------------------------------------
    def _make_ssh_service(self, cfg: Config) -> CommandService | None:
        if not cfg.ssh.enabled:
            return None
        from pvoq.remote.service import CommandService  # asyncssh: loaded only if enabled
        return CommandService(
            data_dir=cfg.data_dir, hostname=cfg.hostname,
            host=self.interface_ip(cfg.ssh.interface_name or cfg.pvo.interface_name),
            port=cfg.ssh.port, maillog=self.maillog, commands=self.admin.commands)

    async def start(self) -> None:
        self.ssh_service: CommandService | None = self._make_ssh_service(self.config)
        GatewayLinkCommands(lambda: self.config, lambda: self.ssh_service).register(self.admin)
        LogChunkCommands(lambda: self.config.logs_dir).register(self.admin)
        ListenerInfoCommands(lambda: self.config).register(self.admin)
        await super().start()
        if self.ssh_service is not None:
            await self.ssh_service.start()
        await self.api.start()

    def console_context(self) -> ConsoleContext:
        """The console also searches and acts on the local quarantines, and mounts the API."""
        ctx = super().console_context()
        local = self.local
        ctx.local_service = lambda: local.service if local.needed() else None
        if local.needed() or self.config.api.enabled:
            ctx.api = self.api.app()
        return ctx

    async def after_reload(self, old: Config, new: Config) -> None:
        """A changed `<ssh>` section restarts the SSH command service on its new address;
        a changed `<api>` restarts the REST API of the local quarantines."""
        await self.api.after_reload(old, new)
        if old.ssh == new.ssh:
            return
        if self.ssh_service is not None:
            await self.ssh_service.stop()
        self.ssh_service = self._make_ssh_service(new)
        if self.ssh_service is not None:
            await self.ssh_service.start()

    async def stop(self) -> None:
        service: CommandService | None = getattr(self, "ssh_service", None)
        if service is not None:
            await service.stop()
        await self.api.stop()
        self.workqueue.stop()
        if self._watcher is not None:
            self._watcher.cancel()
        await self.engines.scanners.aclose()
        if self._migrator is not None:
            await self._migrator.stop()
        await self.local.stop()
        await super().stop()

    def metric_families(self) -> Iterable[Metric]:
        return gateway_families(self.workqueue.depth)

    def status_gauges(self) -> dict[str, int]:
        cpq = self.queues.queued_for(THE_CPQ_HOST)
        gauges = {"messages_in_work_queue": self.workqueue.depth,
                  "messages_in_cpq_host": len(cpq),
                  "kilobytes_in_cpq_host": sum(e.size for e in cpq) // 1024}
        if self.local.needed():  # the local quarantines, once in use
            gauges["messages_in_quarantine"] = self.local.store.held_count()
            gauges["kilobytes_in_quarantine"] = self.local.store.used_bytes() // 1024
        return gauges
