"""The gateway role: receive, scan, deliver clean mail, ship caught mail.

Wires the parts: public listeners accept mail into the spool (fsync before
`250`); the pipeline decides (`gateway.processing`); clean recipients are
routed to their domain's queue, caught messages to `the.cpq.host` (CPQ to
the manager); the `cpq_listener` receives releases from the manager
(`gateway.handlers`), which re-enter the pipeline after the stage that
quarantined them and go downstream.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pvoq.admin.protocol import CommandError
from pvoq.appliance import Appliance
from pvoq.config.model import THE_CPQ_HOST, Config, Listener
from pvoq.cpq.ca import certificate_problem
from pvoq.cpq.client import CpqDestination
from pvoq.cpq.server import CpqSMTP
from pvoq.delivery.queue import DeliveryQueues, Destination
from pvoq.delivery.routes import SmtpRouteDestination
from pvoq.fsutil import atomic_write, remove_leftovers
from pvoq.gateway.handlers import PublicHandler, ReleaseHandler, transfer_marker
from pvoq.gateway.processing import Processing
from pvoq.remote.commands import GatewayLinkCommands, ListenerInfoCommands
from pvoq.remote.service import CommandService
from pvoq.scan.keeper import OutbreakKeeper
from pvoq.scan.outbreak import RulesError
from pvoq.scan.pipeline import Pipeline
from pvoq.scan.rescan import Decision
from pvoq.scan.verdict import ScanError
from pvoq.scan.workers import ScanWorkers
from pvoq.smtp.client import DeliveryError
from pvoq.smtp.server import (
    BaseHandler,
    PvoqSMTP,
)
from pvoq.spool.claims import MAX_ATTEMPTS, Claims
from pvoq.spool.store import INCOMING, QUEUED, Entry, Recipient

NOTICE_RECIPIENT = "outbreak-notices@pvoq.invalid"  # the manager reads the metadata, not this
# A received release's id comes again only if its 250 was lost, at the manager's
# next retry: within its back-off, or when this gateway is back after an outage.
# A year covers any outage worth waiting out; the markers are empty files.
MARKER_LIFETIME_S = 365 * 86400.0


class Gateway(Processing, Appliance):
    role = "gateway"

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.pipeline = Pipeline(config.scan)  # pipeline show, rescans of outbreak copies
        self.scanners = ScanWorkers(config.scan, processes=config.scan.processes)
        self.outbreak = OutbreakKeeper(config.data_dir, self.maillog, hostname=config.hostname,
                                       serial=config.serial_number)
        self.admin.register("pipeline.show", self._cmd_pipeline_show)
        self.admin.register("outbreak.reload", self._cmd_outbreak_reload)
        self.admin.register("outbreak.rescan", self._cmd_outbreak_rescan)
        self.transfers_dir = config.data_dir / "cpq_transfers"
        self.transfers_dir.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.transfers_dir)
        self._prune_transfer_markers()
        self.queues = DeliveryQueues(
            spool=self.spool, maillog=self.maillog, destination_for=self._destination,
            retry_min_s=config.delivery.retry_min_seconds,
            retry_max_s=config.delivery.retry_max_seconds,
            max_queue_lifetime_s=config.delivery.max_queue_lifetime_seconds,
            max_connections_per_host=config.delivery.max_connections_per_host,
            on_bounce=self._bounce, counters=self.counters)
        self._destinations: dict[str, Destination] = {}
        self._work: asyncio.Queue[Entry | None] = asyncio.Queue()
        self._scanner_losses: dict[int, int] = {}
        self._worker: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._suspects: list[Entry] = []
        self._bodies: dict[int, bytes] = {}
        self._in_work = 0
        self.claims = Claims(self.spool)
        self.workqueue_open = asyncio.Event()
        self.workqueue_open.set()
        for name, command in (("workqueue.status", self._cmd_workqueue_status),
                              ("workqueue.pause", self._cmd_workqueue_pause),
                              ("workqueue.resume", self._cmd_workqueue_resume)):
            self.admin.register(name, command)
        self.admin.register("pvo.check", self._cmd_pvo_check)
        self.register_commands()

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

    def handler_for(self, listener: Listener) -> tuple[BaseHandler, type[PvoqSMTP]]:
        if listener.is_cpq:
            return ReleaseHandler(self), CpqSMTP
        return PublicHandler(self), PvoqSMTP

    def apply_config(self, config: Config) -> None:
        super().apply_config(config)
        old, self.pipeline = self.pipeline, Pipeline(config.scan)
        old.close()
        old_scanners, self.scanners = self.scanners, ScanWorkers(
            config.scan, processes=config.scan.processes)
        stopping = asyncio.ensure_future(old_scanners.aclose())  # after their last answers
        self._background.add(stopping)
        stopping.add_done_callback(self._background.discard)
        if self.pipeline.rules.current != old.rules.current:  # new rules: rescan the copies
            async def rescan() -> None:
                await self.rescan_outbreak_copies()
            task = asyncio.ensure_future(rescan())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        self._destinations.clear()

    def _destination(self, host: str) -> Destination:
        found = self._destinations.get(host)
        if found is not None:
            return found
        cfg = self.config
        pvo_ip = self.interface_ip(cfg.pvo.interface_name)
        if host == THE_CPQ_HOST:
            manager = (cfg.pvo.manager_address or "", cfg.pvo.manager_port)
            found = CpqDestination(
                THE_CPQ_HOST, resolve=lambda entry: manager, expect_role="manager",
                expect_name=cfg.pvo.manager_hostname,
                tls_context=self.client_tls, maillog=self.maillog, ids=self.ids,
                local_hostname=cfg.hostname, source_ip=pvo_ip,
                timeout_s=cfg.delivery.timeout_seconds)
        else:
            found = SmtpRouteDestination(host, settings=cfg.delivery, maillog=self.maillog,
                                         ids=self.ids, local_hostname=cfg.hostname,
                                         source_ip=None)
        self._destinations[host] = found
        return found

    # -- the "Enable" readiness check -------------------------------------------
    async def _cmd_pvo_check(self, args: dict[str, Any]) -> dict[str, Any]:
        """Ask the manager over CPQ whether centralized PVO can be enabled here."""
        cfg = self.config
        where = f"{cfg.pvo.manager_address}:{cfg.pvo.manager_port}"
        if not cfg.pvo.enabled:
            raise CommandError("Not ready: centralized PVO quarantines are disabled in this "
                               "gateway's configuration (pvo_quarantines.enabled)")
        own = certificate_problem(cfg.cpq_certificate.certificate)
        if own:
            raise CommandError(f"Not ready: gateway: {own}")
        destination = self._destination(THE_CPQ_HOST)
        conn = destination.connection()
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

    # -- outbreak rules and rescans -------------------------------------------------
    async def _watch_outbreak_rules(self) -> None:
        """Reload the rules file when it changes, and rescan the kept copies."""
        while True:
            await asyncio.sleep(self.config.scan.outbreak.check_interval_seconds)
            try:
                if self.pipeline.rules.changed():
                    await self.reload_outbreak_rules()
            except Exception as exc:  # the watcher must outlive a bad file or a bug
                self.maillog.warning(f"Outbreak rules watcher: {type(exc).__name__}: {exc}")

    async def reload_outbreak_rules(self) -> str:
        pipeline = self.pipeline
        try:
            changed = pipeline.reload_rules()
        except RulesError as exc:
            self.maillog.warning(f"Outbreak rules update refused, the rules in force are "
                                 f"kept: {exc}")
            raise CommandError(f"Outbreak rules update refused: {exc}") from None
        current = pipeline.rules.current
        if not changed:
            return f"Outbreak rules unchanged (version {current.version or '-'})."
        self.scanners.rules_changed()
        self.maillog.info(f"Outbreak rules updated from {pipeline.rules.path}: version "
                          f"{current.version or '-'}, {len(current.rules)} rules")
        decisions = await self.rescan_outbreak_copies()
        return (f"Outbreak rules updated to version {current.version or '-'}; "
                f"{len(decisions)} kept messages rescanned.")

    async def rescan_outbreak_copies(self) -> list[Decision]:
        """Rescan the kept outbreak copies against the rules in force (scan.keeper)."""
        decisions = await self.outbreak.rescan(self.pipeline, self.config.scan)
        await self.ship_notices()
        return decisions

    async def ship_notices(self) -> int:
        """Queue each pending rescan notice for the manager on `the.cpq.host`.

        A notice travels like a quarantined message (spooled, retried) with
        `kind: outbreak_rescan` metadata and a short explanatory body. It
        leaves the outbox only once spooled; a crash in between spools it
        twice, which does no harm: what the manager does with a notice
        (release, delete, set an exit time) is idempotent.
        """
        shipped = 0
        for meta in self.outbreak.notices.pending():
            tid = meta["transfer_id"]
            body = (f"From: MAILER-DAEMON@{self.config.hostname}\r\n"
                    f"To: {NOTICE_RECIPIENT}\r\n"
                    f"Subject: Outbreak rescan: {meta['action']} MID {meta['origin']['mid']}\r\n"
                    f"X-Pvoq-Notice: {tid}\r\n\r\n{meta['reason']}\r\n").encode()
            entry = Entry(mid=self.ids.next("mid"), sender="",
                          recipients=[Recipient(0, NOTICE_RECIPIENT, host=THE_CPQ_HOST)],
                          received=time.time(), size=len(body), state=QUEUED,
                          meta={"cpq": meta, "subject": f"outbreak rescan {meta['action']}",
                                "notice_for": meta["origin"]["mid"]})
            await self.spool.put_async(entry, body)
            self.outbreak.notices.done(tid)
            self.maillog.info(f"MID {entry.mid} outbreak rescan notice for MID "
                              f"{meta['origin']['mid']} ({meta['action']}) queued for "
                              f"{THE_CPQ_HOST}")
            self.queues.add(entry)
            shipped += 1
        return shipped

    # -- operator commands of the pipeline ------------------------------------------
    async def _cmd_pipeline_show(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"data": {"hostname": self.config.hostname,
                         "stages": self.pipeline.describe()}}

    async def _cmd_outbreak_reload(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"text": await self.reload_outbreak_rules()}

    async def _cmd_outbreak_rescan(self, args: dict[str, Any]) -> dict[str, Any]:
        decisions = await self.rescan_outbreak_copies()
        counts = {a: sum(d.action == a for d in decisions) for a in ("release", "extend",
                                                                     "delete")}
        return {"text": f"{len(decisions)} kept messages rescanned: " + ", ".join(
            f"{n} {a}" for a, n in counts.items()) + "."}

    # -- workqueue status|pause|resume ------------------------------------------------
    async def _cmd_workqueue_status(self, args: dict[str, Any]) -> dict[str, Any]:
        paused = not self.workqueue_open.is_set()
        status = "Paused by admin" if paused else "Operating normally"
        count = self._work.qsize() + self._in_work + len(self._suspects)
        return {"text": f"Status: {status}\nMessages: {count}",
                "data": {"status": status, "messages": count}}

    async def _cmd_workqueue_pause(self, args: dict[str, Any]) -> dict[str, Any]:
        if not self.workqueue_open.is_set():
            return {"text": "The work queue is already paused."}
        self.workqueue_open.clear()
        self.maillog.info("Work queue paused by operator")
        return {"text": "Work queue paused. Received mail waits, unscanned, in the spool."}

    async def _cmd_workqueue_resume(self, args: dict[str, Any]) -> dict[str, Any]:
        if self.workqueue_open.is_set():
            return {"text": "The work queue is not paused."}
        self.workqueue_open.set()
        self.maillog.info("Work queue resumed by operator")
        return {"text": "Work queue resumed."}

    async def recover(self) -> None:
        entries = self.spool.recover()
        self.claims.keep_only({e.mid for e in entries if e.state == INCOMING})
        suspects = self.claims.suspects()
        for entry in entries:
            if entry.transfer_id:  # a crash between the spool commit and its marker
                marker = self.transfer_marker(entry.transfer_id)
                if not marker.exists():
                    atomic_write(marker, str(entry.mid).encode())
            if entry.state != INCOMING:
                self.queues.add(entry)
            elif self.claims.attempts(entry.mid) >= MAX_ATTEMPTS:
                bad = self.spool.move_to_bad(entry.mid)
                self.maillog.critical(
                    f"MID {entry.mid} moved to {bad}: processing it stopped the gateway "
                    f"{self.claims.attempts(entry.mid)} times; kept there for an operator")
            elif entry.mid in suspects:
                self._suspects.append(entry)  # processed alone, to find a poison message
            else:
                self.submit(entry)
        if entries:
            self.maillog.info(f"Recovered {len(entries)} messages from the spool")
        await self.ship_notices()  # decisions a crash left in the outbox
        try:
            pids = await self.scanners.start()
            self.maillog.info(f"Scanner processes started: pids {', '.join(map(str, pids))}")
        except (ScanError, OSError) as exc:  # scans wait in the spool; each batch retries
            self.maillog.critical(f"Scanner processes could not start: {exc}; received mail "
                                  f"waits in the spool")
        self._worker = asyncio.create_task(self._process_forever(), name="pipeline")
        self._watcher = asyncio.create_task(self._watch_outbreak_rules(), name="outbreak-rules")

    def _make_ssh_service(self, cfg: Config) -> CommandService | None:
        if not cfg.ssh.enabled:
            return None
        return CommandService(
            data_dir=cfg.data_dir, hostname=cfg.hostname,
            host=self.interface_ip(cfg.ssh.interface_name or cfg.pvo.interface_name),
            port=cfg.ssh.port, maillog=self.maillog, commands=self.admin.commands)

    async def start(self) -> None:
        self.ssh_service: CommandService | None = self._make_ssh_service(self.config)
        GatewayLinkCommands(lambda: self.config, lambda: self.ssh_service).register(self.admin)
        ListenerInfoCommands(lambda: self.config).register(self.admin)
        await super().start()
        if self.ssh_service is not None:
            await self.ssh_service.start()

    async def after_reload(self, old: Config, new: Config) -> None:
        """A changed `<ssh>` section restarts the SSH command service on its new address."""
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
        for task in (self._worker, self._watcher):
            if task is not None:
                task.cancel()
        await self.scanners.aclose()
        await super().stop()

    def status_gauges(self) -> dict[str, int]:
        cpq = [e for e in self.queues.entries.values() if e.pending_for(THE_CPQ_HOST)]
        return {"messages_in_work_queue": self._work.qsize() + self._in_work
                + len(self._suspects),
                "messages_in_cpq_host": len(cpq),
                "kilobytes_in_cpq_host": sum(e.size for e in cpq) // 1024}
