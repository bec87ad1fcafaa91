"""The manager role: keep the quarantines, release back through the gateways.

Wires the parts: the `cpq_listener` stores what gateways ship (body on disk,
metadata in SQL, both durable before `250`); operator commands view, release
and delete; a message released from every quarantine that held it is spooled
for `the.cpq.release.host` and delivered over CPQ to the gateway it came
from, at the address the manager's record of that gateway gives.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any

from pvoq.appliance import Appliance
from pvoq.config.model import THE_CPQ_RELEASE_HOST, Config, Listener
from pvoq.cpq.ca import certificate_problem, peer_common_name, peer_role
from pvoq.cpq.metadata import KIND_OUTBREAK_RESCAN, KIND_QUARANTINE, KIND_RELEASE, VERSION
from pvoq.cpq.server import CpqHandler, CpqSMTP
from pvoq.delivery.queue import DeliveryQueues, Destination
from pvoq.quarantine.commands import QuarantineCommands
from pvoq.quarantine.mime import apply_early_release
from pvoq.quarantine.roles import SYSTEM
from pvoq.quarantine.service import SPACE_FULL, QuarantineService
from pvoq.quarantine.settings import (
    EarlyRelease,
    QuarantineSettings,
    merge_settings,
    quarantine_for,
)
from pvoq.quarantine.store import RELEASED, QuarantineStore
from pvoq.remote.client import SshClient
from pvoq.remote.commands import register_listeners, register_manager
from pvoq.remote.lookup import GatewayLocator, LookupCpqDestination
from pvoq.smtp import replies
from pvoq.smtp.server import BaseHandler, MessageInfo, PvoqEnvelope, PvoqSession, PvoqSMTP
from pvoq.spool.store import QUEUED, Entry, Recipient


class QuarantineHandler(CpqHandler):
    """The manager's `cpq_listener`: quarantined mail from the gateways."""

    def __init__(self, manager: Manager) -> None:
        super().__init__(manager.context)
        self.manager = manager

    def readiness(self, session: PvoqSession) -> list[str]:
        cfg = self.manager.config
        cert = session.peer_certificate
        name = peer_common_name(cert) or "?"
        problems = []
        if not cfg.pvo.enabled:
            problems.append("the centralized PVO quarantine service is disabled on the manager")
        if peer_role(cert) != "gateway":
            problems.append(f"the peer certificate is for a {peer_role(cert)!r}, not a gateway")
        elif cfg.pvo.gateway(name) is None:
            problems.append(f"gateway {name} is not registered on this manager")
        own = certificate_problem(cfg.cpq_certificate.certificate)
        if own:
            problems.append(f"manager: {own}")
        if self.manager.listeners_suspended():
            problems.append("the manager's cpq_listener is suspended")
        return problems

    async def store(self, session: PvoqSession, envelope: PvoqEnvelope, meta: dict[str, Any],
                    content: bytes, info: MessageInfo) -> str:
        log = self.context.maillog
        if meta["kind"] not in (KIND_QUARANTINE, KIND_OUTBREAK_RESCAN):
            return "554 5.7.0 The manager accepts only quarantine transfers over CPQ"
        origin = meta["origin"]["hostname"]
        cert = session.peer_certificate
        if peer_role(cert) != "gateway" or peer_common_name(cert) != origin:
            log.info(f"ICID {session.icid} CPQ transfer refused: certificate "
                     f"{peer_common_name(cert)!r} ({peer_role(cert)}) does not match origin "
                     f"gateway {origin!r}")
            return f"554 5.7.1 Certificate does not match origin gateway {origin}"
        if self.manager.config.pvo.gateway(origin) is None:
            log.info(f"ICID {session.icid} CPQ transfer refused: unknown gateway {origin}")
            return f"554 5.7.1 Gateway {origin} is not registered on this manager"
        if meta["kind"] == KIND_OUTBREAK_RESCAN:
            return self.rescan_notice(session, meta)
        store = self.manager.store
        if store.find_transfer(meta["transfer_id"]) is None:
            names = [quarantine_for(q["name"], store.settings) for q in meta["quarantines"]]
            if not self.manager.service.make_room(len(content), names):
                log.info(f"MID {envelope.mid} refused: quarantine space full "
                         f"({meta['transfer_id']} stays on {origin})")
                return SPACE_FULL
        mid, duplicate = store.add(mid=envelope.mid, meta=meta, body=content,
                                   origin_ip=session.peer_ip, subject=info.subject)
        if duplicate:
            log.info(f"MID {envelope.mid} duplicate CPQ transfer {meta['transfer_id']} of "
                     f"MID {mid}: acknowledged, not stored again")
            return f"250 2.0.0 Ok: transfer {meta['transfer_id']} already stored as MID {mid}"
        log.info(f"MID {mid} received from the ESA {session.peer_ip} for centralized "
                 f"quarantine (ESA {origin} MID {meta['origin']['mid']})")
        for q in meta["quarantines"]:
            log.info(f'MID {mid} quarantined to "{q["name"]}" ({q["reason"]})')
        return replies.accepted(mid)


    def rescan_notice(self, session: PvoqSession, meta: dict[str, Any]) -> str:
        """A gateway rescanned a message it sent to "Outbreak": release, extend or delete it.

        Idempotent by nature, so a retried notice needs no record of its own:
        release and delete of a message no longer held do nothing, and an
        extension sets the scheduled exit to an absolute time.
        """
        log = self.context.maillog
        origin = meta["origin"]
        quarantine = meta["quarantine"]
        store = self.manager.store
        mid = store.find_transfer(meta["quarantine_transfer_id"])
        tid = meta["transfer_id"]
        if mid is None:
            log.info(f"Outbreak rescan notice {tid} from {origin['hostname']} for ESA MID "
                     f"{origin['mid']}: no such message here, nothing to do")
            return f"250 2.0.0 Ok: notice {tid} noted, no such message"
        log.info(f"MID {mid} outbreak rescan by {origin['hostname']} (ESA MID {origin['mid']}): "
                 f"{meta['reason']}; {meta['action']}")
        action = meta["action"]
        if action in ("release", "delete"):
            result = self.manager.service.act(SYSTEM, action, mid, quarantine=quarantine,
                                              how="rescanned")
            if not result.ok:
                log.info(f"MID {mid} outbreak rescan {action}: {result.text}")
            return f"250 2.0.0 Ok: notice {tid}: MID {mid} {action} done"
        record = store.get(mid)
        current = next((q.get("scheduled_exit") for q in (record or {}).get("quarantines", [])
                        if q["quarantine"] == quarantine and q["state"] == "held"), None)
        wanted = float(meta["rescanned_at"]) + float(meta["retention_s"])
        if current is not None and wanted > float(current):
            store.delay(mid, wanted - float(current), quarantine)
            log.info(f'MID {mid} scheduled exit in quarantine "{quarantine}" extended to '
                     f"{time.ctime(wanted)} (rescanned)")
        return f"250 2.0.0 Ok: notice {tid}: MID {mid} extend done"


class Manager(Appliance):
    role = "manager"

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        qs = config.quarantine_store
        url = (qs.database_url or config.database_url
               or f"sqlite:///{config.data_dir / 'quarantine.db'}")
        self.store = QuarantineStore(url, config.data_dir / "quarantine" / "bodies",
                                     bodies=qs.bodies, node=qs.node_name or config.hostname,
                                     settings=quarantine_settings(config))
        self.service = QuarantineService(self.store, self, self.maillog.info,
                                         quota_bytes=int(qs.max_size_mb * 2**20))
        self._expiry_task: asyncio.Task[None] | None = None
        self._expiry_wake = asyncio.Event()
        self.api: Any = None
        self._backlog: collections.deque[tuple[int, str, str, tuple[str, ...]]] = \
            collections.deque()
        self._settler_task: asyncio.Task[None] | None = None
        self.queues = DeliveryQueues(
            spool=self.spool, maillog=self.maillog, destination_for=self._destination,
            retry_min_s=config.delivery.retry_min_seconds,
            retry_max_s=config.delivery.retry_max_seconds, counters=self.counters,
            max_connections_per_host=config.delivery.max_connections_per_host)
        self._release_destination: Destination | None = None
        QuarantineCommands(self.service).register(self.admin)
        self.ssh = SshClient(config.data_dir, hostname=config.hostname,
                             timeout_s=config.ssh.timeout_seconds)
        self.locator = GatewayLocator(self.ssh, self.maillog, self._wake_releases)
        register_manager(self.admin, lambda: self.config, self.ssh, self.locator,
                         self._wake_releases)
        register_listeners(self.admin, lambda: self.config)

    def handler_for(self, listener: Listener) -> tuple[BaseHandler, type[PvoqSMTP]]:
        if not listener.is_cpq:
            raise ValueError(f"listener {listener.name}: the manager has only CPQ listeners")
        return QuarantineHandler(self), CpqSMTP

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

    def _gateway_address(self, entry: Entry) -> tuple[str, int] | None:
        """Where a release goes: for a gateway added over SSH, what it last said (a miss
        starts a lookup and defers the release); otherwise the configured address."""
        record = self.config.pvo.gateway(entry.meta["gateway"])
        if record is None:
            return None
        if self.locator.enrolled(record.hostname):
            return self.locator.address(record.hostname)
        return (record.address, record.cpq_port)

    def _destination(self, host: str) -> Destination:
        if host != THE_CPQ_RELEASE_HOST:
            raise ValueError(f"the manager delivers only to {THE_CPQ_RELEASE_HOST}, not {host}")
        if self._release_destination is None:
            cfg = self.config
            self._release_destination = LookupCpqDestination(
                THE_CPQ_RELEASE_HOST, locator=self.locator, resolve=self._gateway_address,
                expect_role="gateway",
                tls_context=self.client_tls, maillog=self.maillog, ids=self.ids,
                local_hostname=cfg.hostname, source_ip=self.interface_ip(cfg.pvo.interface_name),
                timeout_s=cfg.delivery.timeout_seconds)
        return self._release_destination

    # -- settlement --------------------------------------------------------------
    def settle(self, mid: int, state: str, how: str = "manual",
               names: tuple[str, ...] | None = None) -> None:
        """Finish a message no quarantine holds any more: queue its release or drop it.

        The caller has claimed the settlement (`QuarantineStore.claim_settlement`),
        so of several manager processes exactly one gets here for a message.
        """
        record = self.store.get(mid)
        assert record is not None
        held_for = time.time() - record["received_at"]
        if names is None:
            names = tuple(q["quarantine"] for q in record["quarantines"])
        if state == RELEASED:
            spooled = self.queues.entries.get(mid) or self.spool.get(mid)
            if spooled is not None:
                # Spooled before a crash: keep that entry, its attempts and back-off.
                entry = spooled
            else:
                body = self.store.read_body(mid)
                if how != "expired":
                    for option in self._early_release(names):
                        body = apply_early_release(body, option)
                entry = self._release_entry(record, len(body))
                self.spool.put(entry, body)
            self.queues.add(entry)
            self.maillog.info(f"MID {mid} released from all quarantines")
        self.store.finish(mid, state)
        verb = "released from" if state == RELEASED else "deleted from"
        for name in names:
            self.maillog.info(f'MID {mid} {verb} quarantine "{name}" ({how}) t={held_for:.0f}')

    def settle_many(self, settled: list[tuple[int, str, tuple[str, ...]]], how: str) -> None:
        """Settle claimed messages in the background, yielding to the loop between them.

        They are claimed by this process in the database: if it stops first,
        `recover()` settles the rest on the next start.
        """
        self._backlog.extend((mid, state, how, names) for mid, state, names in settled)
        if self._settler_task is None or self._settler_task.done():
            self._settler_task = asyncio.ensure_future(self._drain_backlog())

    async def _drain_backlog(self) -> None:
        while self._backlog:
            mid, state, how, names = self._backlog.popleft()
            try:
                self.settle(mid, state, how, names)
            except Exception as exc:  # recovered on the next start: the claim stays
                self.maillog.warning(f"MID {mid} settlement failed, left for recovery: {exc}")
            await asyncio.sleep(0)

    def _early_release(self, names: tuple[str, ...]) -> list[EarlyRelease]:
        """The early-release options of the release-by-default quarantines in *names*."""
        result = []
        for name in names:
            settings = self.store.settings.get(name)
            if settings and settings.default_action == "release" and \
                    settings.early_release.active:
                result.append(settings.early_release)
        return result

    def allocate_mid(self) -> int:
        """A new MID (a per-recipient action splits a message in two)."""
        return self.ids.next("mid")

    def send_copy(self, mid: int, address: str) -> int:
        """Spool a copy of *mid* for *address*, delivered by the originating gateway."""
        record = self.store.get(mid)
        assert record is not None
        copy_mid = self.ids.next("mid")
        body = self.store.read_body(mid)
        entry = self._release_entry(record, len(body), copy_mid=copy_mid, to=address)
        self.spool.put(entry, body)
        self.queues.add(entry)
        return copy_mid

    def _release_entry(self, record: dict[str, Any], size: int | None = None, *,
                       copy_mid: int | None = None, to: str | None = None) -> Entry:
        meta = record["meta"]
        mid = copy_mid or record["id"]
        recipients: list[dict[str, Any]] = (meta["recipients"] if to is None
                                            else [{"rid": 0, "address": to}])
        release_meta = {
            "v": VERSION, "kind": KIND_RELEASE,
            "transfer_id": f"r-{self.config.serial_number}-{mid}",
            "origin": meta["origin"], "sender": meta["sender"],
            "recipients": recipients, "quarantines": meta["quarantines"],
            "received": meta["received"], "size": size or meta["size"],
            "release": {"entry": mid, "stages": [q["stage"] for q in meta["quarantines"]],
                        "quarantines": [q["quarantine"] for q in record["quarantines"]]},
        }
        return Entry(
            mid=mid, sender=meta["sender"],
            recipients=[Recipient(r["rid"], r["address"], host=THE_CPQ_RELEASE_HOST)
                        for r in recipients],
            received=record["received_at"], size=size or record["size"], state=QUEUED,
            meta={"cpq": release_meta, "gateway": meta["origin"]["hostname"]})

    async def recover(self) -> None:
        entries = self.spool.recover()
        for entry in entries:
            self.queues.add(entry)
        pending = self.store.sync_quarantines(quarantine_settings(self.config))
        if pending:
            self.service.apply_deleted_quarantines(pending)
        for mid in self.store.unsettled():
            state = self.store.reclaim(mid)
            if state is not None:
                self.settle(mid, state, how="recovered")
        if entries:
            self.maillog.info(f"Recovered {len(entries)} releases from the spool")

    async def start(self) -> None:
        await super().start()
        self._expiry_task = asyncio.ensure_future(self._expiry_loop())
        api = self.config.api
        if api.enabled and api.port:
            from pvoq.web.api import create_app
            from pvoq.web.server import ApiServer

            self.api = ApiServer(create_app(self.service, api.tokens), api.address, api.port)
            self.api.start()
            self.maillog.info(f"REST API listening on {api.address} port {api.port}")

    async def stop(self) -> None:
        await self.locator.stop()
        if self.api is not None:
            await self.api.stop()
        for task in (self._expiry_task, self._settler_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry_task
        await super().stop()
        self.store.close()

    async def _expiry_loop(self) -> None:
        """Apply default actions at scheduled exits, a batch at a time, between waits."""
        while True:
            try:
                while self.service.expire(batch=200, max_batches=1) > 0:
                    await asyncio.sleep(0)
            except Exception as exc:  # a database hiccup must not end expiry for good
                self.maillog.warning(f"Quarantine expiry failed, will retry: {exc}")
            self._expiry_wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._expiry_wake.wait(),
                                       self.config.quarantine_store.expiry_interval_seconds)

    def status_gauges(self) -> dict[str, int]:
        # From the maintained counters: a message in two quarantines counts once.
        return {"messages_in_quarantine": self.store.held_count(),
                "kilobytes_in_quarantine": self.store.used_bytes() // 1024,
                "messages_in_release_host": len(self.queues.entries)}


def quarantine_settings(config: Config) -> dict[str, QuarantineSettings]:
    """The effective quarantines: built-ins, overridden or added to by `<quarantines>`."""
    return merge_settings(
        QuarantineSettings(
            d.name, d.retention_seconds, d.default_action, d.free_up_space,
            EarlyRelease(d.subject_tag, d.subject_position, d.x_header, d.strip_attachments))
        for d in config.quarantines)
