"""The gateway role: receive, scan, deliver clean mail, ship caught mail.

Wires the parts: public listeners accept mail into the spool (fsync before
`250`); the pipeline decides; clean recipients are routed to their domain's
queue, caught messages to `the.cpq.host` (CPQ to the manager); the
`cpq_listener` receives releases from the manager, which re-enter the
pipeline after the stage that quarantined them and go downstream.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from pathlib import Path
from typing import Any

from pvoq.admin.protocol import CommandError
from pvoq.appliance import Appliance
from pvoq.config.model import THE_CPQ_HOST, Config, Listener
from pvoq.cpq.ca import certificate_problem, peer_common_name, peer_role
from pvoq.cpq.client import CpqDestination
from pvoq.cpq.metadata import KIND_QUARANTINE, KIND_RELEASE, VERSION
from pvoq.cpq.server import CpqHandler, CpqSMTP
from pvoq.delivery.queue import DeliveryQueues, Destination
from pvoq.delivery.routes import SmtpRouteDestination
from pvoq.fsutil import atomic_write, remove_leftovers
from pvoq.scan.pipeline import Pipeline, ScanError
from pvoq.smtp import replies
from pvoq.smtp.client import DeliveryError
from pvoq.smtp.server import (
    BaseHandler,
    MessageInfo,
    PvoqEnvelope,
    PvoqSession,
    PvoqSMTP,
)
from pvoq.spool.store import INCOMING, QUEUED, Entry, Recipient

SCAN_RETRY_S = 30.0


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower() or "localhost"


class PublicHandler(BaseHandler):
    """A public/private SMTP listener of the gateway: accept into the spool."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway.context)
        self.gateway = gateway

    async def accept(self, server: PvoqSMTP, session: PvoqSession, envelope: PvoqEnvelope,
                     content: bytes, info: MessageInfo) -> str:
        entry = Entry(
            mid=envelope.mid, sender=envelope.mail_from or "",
            recipients=[Recipient(i, a) for i, a in enumerate(envelope.rcpt_tos)],
            received=time.time(), size=len(content), icid=session.icid,
            peer=session.peer_ip, meta={"subject": info.subject})
        self.gateway.spool.put(entry, content)
        self.gateway.received_messages += 1
        self.gateway.submit(entry)
        return replies.accepted(entry.mid)


class ReleaseHandler(CpqHandler):
    """The gateway's `cpq_listener`: released mail from the manager."""

    def __init__(self, gateway: Gateway) -> None:
        super().__init__(gateway.context)
        self.gateway = gateway

    async def store(self, session: PvoqSession, envelope: PvoqEnvelope, meta: dict[str, Any],
                    content: bytes, info: MessageInfo) -> str:
        log = self.context.maillog
        if meta["kind"] != KIND_RELEASE:
            return "554 5.7.0 This gateway accepts only releases over CPQ"
        role = peer_role(session.peer_certificate)
        if role != "manager":
            log.info(f"ICID {session.icid} CPQ release refused: peer certificate role {role!r}")
            return "554 5.7.1 Only the manager may release mail to this gateway"
        gw = self.gateway
        expected = gw.config.pvo.manager_hostname
        name = peer_common_name(session.peer_certificate)
        if expected and (name or "").lower() != expected.lower():
            log.info(f"ICID {session.icid} CPQ release refused: certificate of {name!r}, "
                     f"this gateway's manager is {expected!r}")
            return f"554 5.7.1 {name} is not this gateway's manager"
        target = meta["origin"]["hostname"]
        if target.lower() != gw.config.hostname.lower():
            log.info(f"ICID {session.icid} CPQ release refused: MID originally on {target}, "
                     f"this is {gw.config.hostname}")
            return f"554 5.7.1 This release belongs to gateway {target}, not {gw.config.hostname}"
        marker = gw.transfer_marker(meta["transfer_id"])
        if marker.exists():
            log.info(f"MID {envelope.mid} duplicate CPQ transfer {meta['transfer_id']} "
                     "acknowledged, not stored again")
            return f"250 2.0.0 Ok: transfer {meta['transfer_id']} already received"
        release = meta["release"]
        entry = Entry(
            mid=envelope.mid, sender=meta["sender"],
            recipients=[Recipient(r["rid"], r["address"]) for r in meta["recipients"]],
            received=time.time(), size=len(content), icid=session.icid, peer=session.peer_ip,
            transfer_id=meta["transfer_id"],
            meta={"subject": info.subject, "released": {
                "origin_mid": meta["origin"]["mid"], "manager_mid": release["entry"],
                "resume_after": Pipeline.resume_point(release["stages"])}})
        gw.spool.put(entry, content)
        atomic_write(marker, str(entry.mid).encode())
        log.info(f"MID {entry.mid} received from the SMA {session.peer_ip} "
                 f"(MID originally {meta['origin']['mid']}) on release from central quarantine")
        gw.submit(entry)
        return replies.accepted(entry.mid)


class Gateway(Appliance):
    role = "gateway"

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.pipeline = Pipeline(config.scan)
        self.transfers_dir = config.data_dir / "cpq_transfers"
        self.transfers_dir.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.transfers_dir)
        self.queues = DeliveryQueues(
            spool=self.spool, maillog=self.maillog, destination_for=self._destination,
            retry_min_s=config.delivery.retry_min_seconds,
            retry_max_s=config.delivery.retry_max_seconds)
        self._destinations: dict[str, Destination] = {}
        self._work: asyncio.Queue[Entry] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.admin.register("pvo.check", self._cmd_pvo_check)

    def transfer_marker(self, transfer_id: str) -> Path:
        return self.transfers_dir / hashlib.sha256(transfer_id.encode()).hexdigest()

    def handler_for(self, listener: Listener) -> tuple[BaseHandler, type[PvoqSMTP]]:
        if listener.is_cpq:
            return ReleaseHandler(self), CpqSMTP
        return PublicHandler(self), PvoqSMTP

    def apply_config(self, config: Config) -> None:
        super().apply_config(config)
        self.pipeline = Pipeline(config.scan)
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

    # -- the pipeline ----------------------------------------------------------
    def submit(self, entry: Entry) -> None:
        self._work.put_nowait(entry)

    async def _process_forever(self) -> None:
        while True:
            entry = await self._work.get()
            try:
                self.process(entry)
            except ScanError as exc:
                self.maillog.warning(f"MID {entry.mid} scan failed, kept for retry in "
                                     f"{SCAN_RETRY_S:.0f}s: {exc}")
                asyncio.get_running_loop().call_later(SCAN_RETRY_S, self.submit, entry)
            except Exception as exc:  # keep the message; never lose it to a bug
                self.maillog.critical(f"MID {entry.mid} application fault in the pipeline: "
                                      f"{type(exc).__name__}: {exc}; message kept in the spool")

    def process(self, entry: Entry) -> None:
        """Run the pipeline on an incoming entry and route it (durably)."""
        released = entry.meta.get("released")
        verdicts = self.pipeline.run(self.spool.read_body(entry.mid),
                                     resume_after=released["resume_after"] if released else None)
        log = self.maillog
        if verdicts:
            for v in verdicts:
                log.info(f'MID {entry.mid} quarantined to "{v.quarantine}" ({v.reason})')
                log.info(f'MID {entry.mid} enqueued for transfer to centralized quarantine '
                         f'"{v.quarantine}" ({v.reason})')
            for r in entry.recipients:
                r.host = THE_CPQ_HOST
            entry.meta["cpq"] = self._quarantine_meta(entry, verdicts)
        else:
            for r in entry.recipients:
                r.host = _domain(r.address)
            log.info(f"MID {entry.mid} queued for delivery")
        entry.state = QUEUED
        self.spool.update(entry)
        self.queues.add(entry)

    def _quarantine_meta(self, entry: Entry, verdicts: list[Any]) -> dict[str, Any]:
        return {
            "v": VERSION, "kind": KIND_QUARANTINE,
            "transfer_id": f"q-{self.config.serial_number}-{entry.mid}-{uuid.uuid4().hex[:12]}",
            "origin": {"hostname": self.config.hostname, "serial": self.config.serial_number,
                       "mid": entry.mid, "icid": entry.icid, "peer": entry.peer},
            "sender": entry.sender,
            "recipients": [{"rid": r.rid, "address": r.address} for r in entry.recipients],
            "quarantines": [{"name": v.quarantine, "reason": v.reason, "stage": v.stage,
                             "detail": v.detail} for v in verdicts],
            "received": entry.received, "size": entry.size,
        }

    async def recover(self) -> None:
        entries = self.spool.recover()
        for entry in entries:
            if entry.transfer_id:  # a crash between the spool commit and its marker
                marker = self.transfer_marker(entry.transfer_id)
                if not marker.exists():
                    atomic_write(marker, str(entry.mid).encode())
            if entry.state == INCOMING:
                self.submit(entry)
            else:
                self.queues.add(entry)
        if entries:
            self.maillog.info(f"Recovered {len(entries)} messages from the spool")
        self._worker = asyncio.create_task(self._process_forever(), name="pipeline")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        await super().stop()

    def status_gauges(self) -> dict[str, int]:
        cpq = [e for e in self.queues.entries.values() if e.pending_for(THE_CPQ_HOST)]
        return {"messages_in_work_queue": self._work.qsize(),
                "messages_in_cpq_host": len(cpq),
                "kilobytes_in_cpq_host": sum(e.size for e in cpq) // 1024}
