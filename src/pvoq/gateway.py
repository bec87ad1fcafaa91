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
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pvoq.admin.protocol import CommandError
from pvoq.appliance import Appliance
from pvoq.config.hat import match_hat
from pvoq.config.model import THE_CPQ_HOST, Config, Listener
from pvoq.cpq.ca import certificate_problem, peer_common_name, peer_role
from pvoq.cpq.client import CpqDestination
from pvoq.cpq.metadata import KIND_QUARANTINE, KIND_RELEASE, VERSION
from pvoq.cpq.server import CpqHandler, CpqSMTP
from pvoq.delivery.dsn import build_dsn, status_of
from pvoq.delivery.queue import DeliveryQueues, Destination
from pvoq.delivery.routes import SmtpRouteDestination
from pvoq.fsutil import atomic_write, remove_leftovers
from pvoq.remote.commands import register_gateway, register_listeners
from pvoq.remote.service import CommandService
from pvoq.scan.keeper import OutbreakKeeper
from pvoq.scan.message import Envelope
from pvoq.scan.outbreak import RulesError
from pvoq.scan.pipeline import (
    ANTIVIRUS,
    MESSAGE_FILTERS,
    OUTBREAK_FILTERS,
    Pipeline,
    ScanError,
)
from pvoq.scan.rescan import Decision
from pvoq.scan.verdict import BOUNCE, DROP, QUARANTINE, ScanResult, StageTrace, Verdict
from pvoq.smtp import replies
from pvoq.smtp.client import DeliveryError
from pvoq.smtp.server import (
    BaseHandler,
    MessageInfo,
    PvoqEnvelope,
    PvoqSession,
    PvoqSMTP,
)
from pvoq.spool.store import BOUNCED, DELETED, INCOMING, QUEUED, Entry, Recipient

DEFAULT_POLICY = "DEFAULT"


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
        await self.gateway.spool.put_async(entry, content)
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
        await gw.spool.put_async(entry, content)
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
        self._policy_pipelines: dict[str, Pipeline] = {}
        self.outbreak = OutbreakKeeper(config.data_dir, self.maillog, hostname=config.hostname,
                                       serial=config.serial_number)
        self.admin.register("pipeline.show", self._cmd_pipeline_show)
        self.admin.register("outbreak.reload", self._cmd_outbreak_reload)
        self.admin.register("outbreak.rescan", self._cmd_outbreak_rescan)
        self.transfers_dir = config.data_dir / "cpq_transfers"
        self.transfers_dir.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.transfers_dir)
        self.queues = DeliveryQueues(
            spool=self.spool, maillog=self.maillog, destination_for=self._destination,
            retry_min_s=config.delivery.retry_min_seconds,
            retry_max_s=config.delivery.retry_max_seconds,
            max_queue_lifetime_s=config.delivery.max_queue_lifetime_seconds,
            on_bounce=self._bounce, counters=self.counters)
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
        old, self.pipeline = self.pipeline, Pipeline(config.scan)
        old.close()
        if self.pipeline.rules.current != old.rules.current:  # new rules: rescan the copies
            async def rescan() -> None:
                await self.rescan_outbreak_copies()
            task = asyncio.ensure_future(rescan())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        for pipeline in self._policy_pipelines.values():
            pipeline.close()
        self._policy_pipelines.clear()
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

    # -- bounces ----------------------------------------------------------------
    def _bounce(self, entry: Entry, rcpts: list[Recipient], reason: str) -> None:
        """Queue a DSN (RFC 3464) to the envelope sender; never for a DSN (null sender)."""
        if not entry.sender:
            self.maillog.info(f"MID {entry.mid} bounce not sent: null sender")
            return
        body = build_dsn(reporting_host=self.config.hostname, sender=entry.sender,
                         original_mid=entry.mid, received=entry.received,
                         failures=[(r.address, status_of(r.last_error or reason, "5.0.0"),
                                    r.last_error or reason) for r in rcpts],
                         original=self.spool.read_body(entry.mid))
        dsn = Entry(mid=self.ids.next("mid"), sender="",
                    recipients=[Recipient(0, entry.sender, host=_domain(entry.sender))],
                    received=time.time(), size=len(body), state=QUEUED,
                    meta={"subject": "Delivery Status Notification (Failure)",
                          "dsn_for": entry.mid})
        self.spool.put(dsn, body)
        self.maillog.info(f"MID {dsn.mid} DSN for MID {entry.mid} to <{entry.sender}> "
                          f"queued for delivery")
        self.queues.add(dsn)

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
        watcher = asyncio.create_task(self._watch_outbreak_rules(), name="outbreak-rules")
        try:
            while True:
                entry = await self._work.get()
                try:
                    await self.process(entry)
                except ScanError as exc:
                    # Fail closed: the entry stays INCOMING in the spool and is scanned again.
                    retry_s = self.config.scan.retry_seconds
                    self.maillog.warning(
                        f"MID {entry.mid} temporary failure in {exc.stage or 'the pipeline'}: "
                        f"{exc}; message kept in the spool, retry in {retry_s:g}s")
                    asyncio.get_running_loop().call_later(retry_s, self.submit, entry)
                except Exception as exc:  # keep the message; never lose it to a bug
                    self.maillog.critical(f"MID {entry.mid} application fault in the pipeline: "
                                          f"{type(exc).__name__}: {exc}; message kept in the "
                                          "spool")
        finally:
            watcher.cancel()

    def _envelope(self, entry: Entry) -> Envelope:
        group = ""
        public = [x for x in self.config.listeners if not x.is_cpq]
        if public and entry.peer:
            try:
                group = match_hat(public[0].hat, entry.peer).group
            except ValueError:
                group = ""
        return Envelope(entry.sender, tuple(r.address for r in entry.recipients), entry.peer,
                        group)

    async def process(self, entry: Entry) -> None:
        """Scan an incoming entry (in a worker thread) and route it durably.

        Recipients under different per-recipient policies split the message:
        message filters run on the whole message, then each policy's part gets a
        new MID and runs the later stages with that policy's settings. A
        ScanError (a stage erred or timed out) propagates: the entry stays
        INCOMING in the spool, untouched, and is scanned again later.
        """
        released = entry.meta.get("released")
        resume_after = released["resume_after"] if released else entry.meta.get("resume_after")
        body = self.spool.read_body(entry.mid)
        envelope = self._envelope(entry)
        if not released and "policy" not in entry.meta:
            groups = self._policy_groups(entry)
            if len(groups) > 1:
                first = await asyncio.to_thread(self.pipeline.run, body, envelope=envelope,
                                                stop_after=MESSAGE_FILTERS)
                if first.action in (DROP, BOUNCE):
                    self.route(entry, first)
                else:
                    self._split(entry, groups, first, body)
                return
            self.maillog.info(f"MID {entry.mid} matched all recipients for per-recipient "
                              f"policy {next(iter(groups))} in the inbound table")
        result = await asyncio.to_thread(
            self._pipeline_for(entry).run, body, envelope=envelope, resume_after=resume_after,
            skip=tuple(entry.meta.get("skip", ())))
        prior = [Verdict(**v) for v in entry.meta.get("prior_verdicts", [])]
        if prior and result.action not in (DROP, BOUNCE):
            result.verdicts[:0] = prior
            result.action = QUARANTINE
        if released:
            self.outbreak.released(int(released["origin_mid"]), entry.mid)
        self.route(entry, result)

    # -- per-recipient mail policies -------------------------------------------------
    def _policy_groups(self, entry: Entry) -> dict[str, list[Recipient]]:
        groups: dict[str, list[Recipient]] = {}
        for r in entry.recipients:
            policy = self.config.scan.policy_for(r.address)
            groups.setdefault(policy.name if policy else DEFAULT_POLICY, []).append(r)
        return groups

    def _pipeline_for(self, entry: Entry) -> Pipeline:
        name = entry.meta.get("policy")
        if name is None:
            policy = self.config.scan.policy_for(entry.recipients[0].address)
        else:
            policy = next((p for p in self.config.scan.policies if p.name == name), None)
        if policy is None:
            return self.pipeline
        found = self._policy_pipelines.get(policy.name)
        if found is None:
            found = self._policy_pipelines[policy.name] = self.pipeline.for_policy(policy)
        return found

    def _split(self, entry: Entry, groups: dict[str, list[Recipient]], first: ScanResult,
               body: bytes) -> None:
        """One new MID per policy, each spooled durably before the original goes."""
        for trace in first.trace:
            self._log_trace(entry.mid, trace)
        part_body = first.body if first.body is not None else body
        for dup in first.duplicates:
            self._duplicate(entry, dup, part_body)
        skip = list(first.skip)  # skip-filters() on the whole message holds for every part
        parts: list[tuple[str, Entry]] = []
        for name, rcpts in groups.items():
            part = Entry(
                mid=self.ids.next("mid"), sender=entry.sender,
                recipients=[Recipient(r.rid, r.address) for r in rcpts],
                received=entry.received, size=len(part_body), icid=entry.icid, peer=entry.peer,
                meta={"subject": entry.meta.get("subject", ""), "policy": name,
                      "split_from": entry.mid, "resume_after": MESSAGE_FILTERS,
                      "prior_verdicts": [asdict(v) for v in first.verdicts], "skip": skip})
            self.spool.put(part, part_body)
            parts.append((name, part))
        for name, part in parts:
            rids = ", ".join(str(r.rid) for r in part.recipients)
            self.maillog.info(f"MID {entry.mid} rewritten to MID {part.mid} by per-recipient "
                              f"policy {name} (RID [{rids}])")
        self.spool.remove(entry.mid)
        for _, part in parts:
            self.submit(part)

    def route(self, entry: Entry, result: ScanResult) -> None:
        """Act on a scan result; every change is on disk before the entry is queued."""
        log = self.maillog
        mid = entry.mid
        for trace in result.trace:
            self._log_trace(mid, trace)
        if result.action in (DROP, BOUNCE):
            self._finish_unqueued(entry, result)
            return
        if result.body is not None:
            entry.size = len(result.body)
            self.spool.put(entry, result.body)  # the modified message replaces the original
            log.info(f"MID {mid} rewritten by the pipeline ({entry.size} bytes)")
        body = result.body if result.body is not None else None
        for dup in result.duplicates:
            self._duplicate(entry, dup, body)
        if result.verdicts:
            for v in result.verdicts:
                log.info(f'MID {mid} quarantined to "{v.quarantine}" ({v.reason})')
                log.info(f'MID {mid} enqueued for transfer to centralized quarantine '
                         f'"{v.quarantine}" ({v.reason})')
            for r in entry.recipients:
                r.host = THE_CPQ_HOST
            entry.meta["cpq"] = self._quarantine_meta(entry, result.verdicts, result.trace)
            self.outbreak.keep(mid=entry.mid, transfer_id=entry.meta["cpq"]["transfer_id"],
                               sender=entry.sender,
                               recipients=[r.address for r in entry.recipients],
                               verdicts=result.verdicts,
                               body=body if body is not None else self.spool.read_body(entry.mid))
        else:
            for r in entry.recipients:
                r.host = _domain(r.address)
            log.info(f"MID {mid} queued for delivery")
        entry.state = QUEUED
        self.spool.update(entry)
        self.queues.add(entry)

    def _log_trace(self, mid: int, trace: StageTrace) -> None:
        if trace.stage == ANTIVIRUS and trace.outcome != "skipped":
            hit = trace.hits[0] if trace.hits else ""
            if "VIRAL" in hit:
                self.maillog.info(f"MID {mid} antivirus positive '{hit.split()[-1]}'")
            elif hit:
                self.maillog.info(f"MID {mid} antivirus {hit.split(':', 1)[1].split()[0].lower()}")
            elif trace.misses and "disabled" not in trace.misses[0]:
                self.maillog.info(f"MID {mid} antivirus negative")
        elif trace.stage == OUTBREAK_FILTERS and trace.outcome != "skipped":
            verdict = "positive" if trace.hits else "negative"
            self.maillog.info(f"MID {mid} Outbreak Filters: verdict {verdict}"
                              + (f" ({', '.join(trace.hits)})" if trace.hits else ""))
        elif trace.hits:
            self.maillog.info(f"MID {mid} {trace.stage.replace('_', ' ')} matched: "
                              f"{', '.join(trace.hits)}")

    def _finish_unqueued(self, entry: Entry, result: ScanResult) -> None:
        """Drop or bounce: every recipient reaches a final state and the entry goes.

        A bounce's DSN is spooled (by `_bounce`) before the original is removed.
        """
        if result.action == DROP:
            self.maillog.info(f"MID {entry.mid} dropped by {result.reason}")
        for r in entry.recipients:
            r.status = DELETED if result.action == DROP else BOUNCED
            r.last_error = f"5.7.1 message bounced by {result.reason}"
            if result.action == BOUNCE:
                self.maillog.info(f"Bounced: MID {entry.mid} to RID [{r.rid}] - {r.last_error}")
        if result.action == BOUNCE:
            self._bounce(entry, entry.recipients, f"5.7.1 message bounced by {result.reason}")
        self.spool.remove(entry.mid)
        self.maillog.info(f"Message finished MID {entry.mid} done")

    def _duplicate(self, entry: Entry, verdict: Verdict, body: bytes | None) -> None:
        """A copy of the message, as its own MID, to a quarantine (duplicate-quarantine)."""
        new_mid = self.ids.next("mid")
        copy = Entry(mid=new_mid, sender=entry.sender,
                     recipients=[Recipient(r.rid, r.address, host=THE_CPQ_HOST)
                                 for r in entry.recipients],
                     received=entry.received, size=entry.size, icid=entry.icid, peer=entry.peer,
                     state=QUEUED, meta={"subject": entry.meta.get("subject", ""),
                                         "duplicate_of": entry.mid})
        copy.meta["cpq"] = self._quarantine_meta(copy, [verdict])
        self.spool.put(copy, body if body is not None else self.spool.read_body(entry.mid))
        self.maillog.info(f"MID {new_mid} was generated based on MID {entry.mid} by "
                          f"duplicate-quarantine ({verdict.reason})")
        self.maillog.info(f'MID {new_mid} enqueued for transfer to centralized quarantine '
                          f'"{verdict.quarantine}" ({verdict.reason})')
        self.queues.add(copy)

    def _quarantine_meta(self, entry: Entry, verdicts: list[Verdict],
                         trace: list[StageTrace] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "v": VERSION, "kind": KIND_QUARANTINE,
            "transfer_id": f"q-{self.config.serial_number}-{entry.mid}-{uuid.uuid4().hex[:12]}",
            "origin": {"hostname": self.config.hostname, "serial": self.config.serial_number,
                       "mid": entry.mid, "icid": entry.icid, "peer": entry.peer},
            "sender": entry.sender,
            "recipients": [{"rid": r.rid, "address": r.address} for r in entry.recipients],
            "quarantines": [v.metadata() for v in verdicts],
            "received": entry.received, "size": entry.size,
        }
        if trace:  # the why: every stage's hits and misses (the manager may show it)
            meta["scan_trace"] = [{"stage": t.stage, "outcome": t.outcome, "hits": list(t.hits),
                                   "misses": list(t.misses)} for t in trace]
        return meta

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
        self.maillog.info(f"Outbreak rules updated from {pipeline.rules.path}: version "
                          f"{current.version or '-'}, {len(current.rules)} rules")
        decisions = await self.rescan_outbreak_copies()
        return (f"Outbreak rules updated to version {current.version or '-'}; "
                f"{len(decisions)} kept messages rescanned.")

    async def rescan_outbreak_copies(self) -> list[Decision]:
        """Rescan the kept outbreak copies against the rules in force (scan.keeper)."""
        return await self.outbreak.rescan(self.pipeline, self.config.scan)

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

    async def start(self) -> None:
        cfg = self.config
        self.ssh_service: CommandService | None = None
        if cfg.ssh.enabled:
            self.ssh_service = CommandService(
                data_dir=cfg.data_dir, hostname=cfg.hostname,
                host=self.interface_ip(cfg.ssh.interface_name or cfg.pvo.interface_name),
                port=cfg.ssh.port, maillog=self.maillog, commands=self.admin.commands)
        register_gateway(self.admin, lambda: self.config, self.ssh_service)
        register_listeners(self.admin, lambda: self.config)
        await super().start()
        if self.ssh_service is not None:
            await self.ssh_service.start()

    async def stop(self) -> None:
        service: CommandService | None = getattr(self, "ssh_service", None)
        if service is not None:
            await service.stop()
        if self._worker is not None:
            self._worker.cancel()
        await super().stop()

    def status_gauges(self) -> dict[str, int]:
        cpq = [e for e in self.queues.entries.values() if e.pending_for(THE_CPQ_HOST)]
        return {"messages_in_work_queue": self._work.qsize(),
                "messages_in_cpq_host": len(cpq),
                "kilobytes_in_cpq_host": sum(e.size for e in cpq) // 1024}
