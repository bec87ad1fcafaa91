"""The manager: wire the parts that keep the quarantines and release through the gateways.

The `cpq_listener` stores what gateways ship (`handler.QuarantineHandler`:
body on disk, metadata in SQL, both durable before `250`); operator commands
and the REST API view, release and delete (`QuarantineService`); a message
released from every quarantine that held it is spooled for
`the.cpq.release.host` (`releases.Releases`) and delivered over CPQ to the
gateway it came from, at the address the manager's record of that gateway
gives (configured, or looked up over SSH). An expiry loop applies the
quarantines' default actions at their scheduled exits.

Several managers may share one PostgreSQL database, each with its own
`node_name` and CPQ certificate: MIDs come from blocks reserved in the
database (`manager.mids`), every action and settlement is claimed there by
exactly one process, and a release's transfer id is the same whichever
manager spools it (`releases`), so a gateway takes it once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pvoq.appliance import Appliance
from pvoq.config.model import THE_CPQ_RELEASE_HOST, Config, Listener
from pvoq.cpq.server import CpqSMTP
from pvoq.delivery.queue import DeliveryQueues, Destination
from pvoq.delivery.routes import SmtpRouteDestination
from pvoq.logsub.commands import LogSubscriptionCommands
from pvoq.logsub.subscriber import LogSubscription
from pvoq.manager.handler import QuarantineHandler
from pvoq.manager.mids import SharedIds
from pvoq.manager.migration import MigrationCommands, MigrationWizard, audit_hook, notice_entry
from pvoq.manager.releases import Releases
from pvoq.manager.rescan import DryRescanner
from pvoq.metrics.live import Metric, manager_families
from pvoq.quarantine.audit import key_path
from pvoq.quarantine.commands import QuarantineCommands
from pvoq.quarantine.definitions import QuarantineConfigCommands
from pvoq.quarantine.expiry import expiry_loop
from pvoq.quarantine.overview import OverviewCommands
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.settings import quarantine_settings
from pvoq.quarantine.store import QuarantineStore
from pvoq.remote.client import SshClient
from pvoq.remote.commands import ListenerInfoCommands, ManagerLinkCommands
from pvoq.remote.lookup import GatewayLocator, LookupCpqDestination
from pvoq.smtp.server import BaseHandler, PvoqSMTP
from pvoq.spool.store import Entry
from pvoq.web.apiservice import ApiService

if TYPE_CHECKING:
    from pvoq.web.console.context import ConsoleContext


class Manager(Appliance):
    """The manager role: quarantines in SQL and on disk, releases over CPQ to the gateways.

    Parts, each given what it uses: `store` (`QuarantineStore`), `releases`
    (`Releases`, the service's settler, over the spool and `queues`),
    `service` (`QuarantineService`, what the CLI, the REST API and the
    expiry loop call), `queues` (one host: `the.cpq.release.host`), `ssh`
    and `locator` (where a gateway added over SSH listens). Operator
    commands: the common ones, `quarantine.*`/`audit.*`, `gateway.*`,
    `listeners`.
    """

    role = "manager"

    def __init__(self, config: Config, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        qs = config.quarantine_store
        url = (qs.database_url or config.database_url
               or f"sqlite:///{config.data_dir / 'quarantine.db'}")
        self.store = QuarantineStore(url, config.data_dir / "quarantine" / "bodies",
                                     bodies=qs.bodies, node=qs.node_name or config.hostname,
                                     inline_max=int(qs.inline_body_max_kb * 1024),
                                     settings=quarantine_settings(config))
        # MIDs are the stored rows' ids: unique across every manager on this database.
        self.ids = SharedIds(config.data_dir / "ids.json", self.store.engine)
        self.context.ids = self.ids
        self.queues = DeliveryQueues(
            spool=self.spool, maillog=self.maillog, destination_for=self._destination,
            retry_min_s=config.delivery.retry_min_seconds,
            retry_max_s=config.delivery.retry_max_seconds, counters=self.counters,
            max_connections_per_host=config.delivery.max_connections_per_host)
        self.releases = Releases(store=self.store, spool=self.spool, queues=self.queues,
                                 ids=self.ids, maillog=self.maillog,
                                 serial_number=config.serial_number)
        self.service = QuarantineService(self.store, self.releases, self.maillog.info,
                                         quota_bytes=int(qs.max_size_mb * 2**20),
                                         audit_key_file=key_path(url, config.data_dir))
        self._expiry_task: asyncio.Task[None] | None = None
        self._expiry_wake = asyncio.Event()
        self.api = ApiService(config=lambda: self.config, service=lambda: self.service,
                              users=self.users, maillog=self.maillog)
        self._release_destination: Destination | None = None
        self.ssh = SshClient(config.data_dir, hostname=config.hostname,
                             timeout_s=config.ssh.timeout_seconds)
        self.locator = GatewayLocator(self.ssh, self.maillog, self._wake_releases)
        self.service.rescanner = DryRescanner(
            config=lambda: self.config, address=self._address_of, tls=lambda: self.client_tls,
            ids=self.ids, maillog=self.maillog,
            source_ip=lambda: self.interface_ip(self.config.pvo.interface_name))
        self.register_commands()
        QuarantineCommands(self.service).register(self.admin)
        definitions = QuarantineConfigCommands(lambda: self.config, self.reload,
                                               self.service.audit.append,
                                               self.store.held_count, self.maillog.info)
        definitions.register(self.admin)
        OverviewCommands(lambda: self.store.settings, self.store.engine,
                         lambda: self.service.quota_bytes).register(self.admin)
        ManagerLinkCommands(lambda: self.config, self.ssh, self.locator,
                            self._gateway_linked).register(self.admin)
        ListenerInfoCommands(lambda: self.config).register(self.admin)
        self.logsub = LogSubscription(config=lambda: self.config, ssh=self.ssh,
                                      maillog=self.maillog)
        LogSubscriptionCommands(self.logsub).register(self.admin)
        # The migration wizard: the gateways' local quarantines moved here over CPQ.
        self.store.on_batch = audit_hook(self.service.audit.append)
        self.migration = MigrationWizard(
            config=lambda: self.config, ssh=self.ssh, data_dir=config.data_dir,
            maillog=self.maillog, central=lambda: set(self.store.settings),
            create_quarantine=lambda name, peer: definitions.add({"name": name}, peer),
            notify=self._notify)
        MigrationCommands(self.migration).register(self.admin)

    def handler_for(self, listener: Listener) -> tuple[BaseHandler, type[PvoqSMTP]]:
        if not listener.is_cpq:
            raise ValueError(f"listener {listener.name}: the manager has only CPQ listeners")
        handler = QuarantineHandler(self.context, config=lambda: self.config,
                                    service=self.service,
                                    cpq_suspended=self.listeners.cpq_suspended)
        return handler, CpqSMTP

    def apply_config(self, config: Config) -> None:
        super().apply_config(config)
        self._release_destination = None
        # Quarantine settings and the space quota take effect at once; a quarantine
        # removed from the configuration is deleted (its default action applied).
        pending = self.store.sync_quarantines(quarantine_settings(config))
        if pending:
            self.service.apply_deleted_quarantines(pending)
        self.service.quota_bytes = int(config.quarantine_store.max_size_mb * 2**20)
        self.ssh.timeout_s = config.ssh.timeout_seconds

    def _wake_releases(self) -> None:
        self.queues.wake(THE_CPQ_RELEASE_HOST)

    def _gateway_linked(self) -> None:
        """A gateway was added or its address may have changed: releases waiting for it go,
        and the log subscription pulls at once instead of at its next interval."""
        self._wake_releases()
        self.logsub.wake()

    def _gateway_address(self, entry: Entry) -> tuple[str, int] | None:
        """Where a release goes: for a gateway added over SSH, what it last said (a miss
        starts a lookup and defers the release); otherwise the configured address."""
        return self._address_of(entry.meta["gateway"])

    def _address_of(self, gateway: str) -> tuple[str, int] | None:
        """Where the `cpq_listener` of *gateway* is (releases and dry rescans)."""
        record = self.config.pvo.gateway(gateway)
        if record is None:
            return None
        if self.locator.enrolled(record.hostname):
            return self.locator.address(record.hostname)
        return (record.address, record.cpq_port)

    def _notify(self, address: str, subject: str, text: str) -> int:
        """Spool a notification mail (the migration wizard's) for *address*; its MID."""
        entry, body = notice_entry(mid=self.ids.next("mid"), hostname=self.config.hostname,
                                   address=address, subject=subject, text=text)
        self.spool.put(entry, body)
        self.queues.add(entry)
        self.maillog.info(f"MID {entry.mid} notification to {address} queued: {subject}")
        return entry.mid

    def _destination(self, host: str) -> Destination:
        if host != THE_CPQ_RELEASE_HOST:  # a notification mail: the SMTP routes
            return SmtpRouteDestination(host, settings=self.config.delivery,
                                        maillog=self.maillog, ids=self.ids,
                                        local_hostname=self.config.hostname, source_ip=None)
        if self._release_destination is None:
            cfg = self.config
            self._release_destination = LookupCpqDestination(
                THE_CPQ_RELEASE_HOST, locator=self.locator, resolve=self._gateway_address,
                expect_role="gateway",
                tls_context=self.client_tls, maillog=self.maillog, ids=self.ids,
                local_hostname=cfg.hostname, source_ip=self.interface_ip(cfg.pvo.interface_name),
                timeout_s=cfg.delivery.timeout_seconds)
        return self._release_destination

    # -- lifecycle ---------------------------------------------------------------
    async def recover(self) -> None:
        bodies, temps = self.store.sweep_bodies()
        if bodies or temps:
            self.maillog.info(f"Removed {bodies} quarantine bodies with no held message and "
                              f"{temps} temporary files left by an interrupted write")
        entries = self.spool.recover()
        for entry in entries:
            self.queues.add(entry)
        pending = self.store.sync_quarantines(quarantine_settings(self.config))
        if pending:
            self.service.apply_deleted_quarantines(pending)
        for mid in self.store.unsettled():
            state = self.store.reclaim(mid)
            if state is not None:
                self.releases.settle(mid, state, how="recovered")
        if entries:
            self.maillog.info(f"Recovered {len(entries)} releases from the spool")

    async def start(self) -> None:
        await super().start()
        self._expiry_task = asyncio.ensure_future(self._expiry_loop())
        self.logsub.start()
        self.migration.resume()  # a migration a stop or crash interrupted
        await self.api.start()

    def console_context(self) -> ConsoleContext:
        ctx = super().console_context()
        ctx.service, ctx.api = self.service, self.api.app()
        return ctx

    async def after_reload(self, old: Config, new: Config) -> None:
        """`<api>` takes effect at once (`ApiService.after_reload`)."""
        await super().after_reload(old, new)
        await self.api.after_reload(old, new)

    async def stop(self) -> None:
        await self.locator.stop()
        await self.migration.stop()
        await self.logsub.stop()
        await self.api.stop()
        if self._expiry_task is not None and not self._expiry_task.done():
            self._expiry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry_task
        await self.releases.stop()
        await super().stop()
        self.store.close()

    async def _expiry_loop(self) -> None:
        """Apply default actions at scheduled exits, a batch at a time, between waits; a
        chunk of the search dictionary pruned at each pass (`QuarantineStore.prune_vocabulary`)."""
        await expiry_loop(lambda: self.service.expire(batch=200, max_batches=1),
                          self._expiry_wake,
                          lambda: self.config.quarantine_store.expiry_interval_seconds,
                          self.maillog.warning, after=self.store.prune_vocabulary)

    def metric_families(self) -> Iterable[Metric]:
        return manager_families(self.store, quarantine_settings(self.config),
                                [g.hostname for g in self.config.pvo.gateways],
                                self.locator.fault)

    def status_gauges(self) -> dict[str, int]:
        # From the maintained counters: a message in two quarantines counts once.
        return {"messages_in_quarantine": self.store.held_count(),
                "kilobytes_in_quarantine": self.store.used_bytes() // 1024,
                "messages_in_release_host": len(self.queues.entries)}
