"""The manager role: keep the quarantines, release back through the gateways.

Wires the parts: the `cpq_listener` stores what gateways ship (body on disk,
metadata in SQL, both durable before `250`); operator commands view, release
and delete; a message released from every quarantine that held it is spooled
for `the.cpq.release.host` and delivered over CPQ to the gateway it came
from, at the address the manager's record of that gateway gives.
"""

from __future__ import annotations

import time
from typing import Any

from pvoq.admin.protocol import CommandError
from pvoq.appliance import Appliance
from pvoq.config.model import THE_CPQ_RELEASE_HOST, Config, Listener
from pvoq.cpq.ca import certificate_problem, peer_common_name, peer_role
from pvoq.cpq.client import CpqDestination
from pvoq.cpq.metadata import KIND_QUARANTINE, KIND_RELEASE, VERSION
from pvoq.cpq.server import CpqHandler, CpqSMTP
from pvoq.delivery.queue import DeliveryQueues, Destination
from pvoq.quarantine.store import DELETED, RELEASED, QuarantineError, QuarantineStore
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
        if meta["kind"] != KIND_QUARANTINE:
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
        store = self.manager.store
        mid, duplicate = store.add(mid=envelope.mid, meta=meta, body=content,
                                   origin_ip=session.peer_ip, subject=info.subject)
        if duplicate:
            log.info(f"MID {envelope.mid} duplicate CPQ transfer {meta['transfer_id']} of "
                     f"MID {mid}: acknowledged, not stored again")
            return f"250 2.0.0 Ok: transfer {meta['transfer_id']} already stored as MID {mid}"
        self.manager.received_messages += 1
        log.info(f"MID {mid} received from the ESA {session.peer_ip} for centralized "
                 f"quarantine (ESA {origin} MID {meta['origin']['mid']})")
        for q in meta["quarantines"]:
            log.info(f'MID {mid} quarantined to "{q["name"]}" ({q["reason"]})')
        return replies.accepted(mid)


class Manager(Appliance):
    role = "manager"

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        url = config.database_url or f"sqlite:///{config.data_dir / 'quarantine.db'}"
        self.store = QuarantineStore(url, config.data_dir / "quarantine" / "bodies")
        self.queues = DeliveryQueues(
            spool=self.spool, maillog=self.maillog, destination_for=self._destination,
            retry_min_s=config.delivery.retry_min_seconds,
            retry_max_s=config.delivery.retry_max_seconds)
        self._release_destination: Destination | None = None
        for name, command in (("quarantine.list", self._cmd_list),
                              ("quarantine.show", self._cmd_show),
                              ("quarantine.release", self._cmd_release),
                              ("quarantine.delete", self._cmd_delete)):
            self.admin.register(name, command)

    def handler_for(self, listener: Listener) -> tuple[BaseHandler, type[PvoqSMTP]]:
        if not listener.is_cpq:
            raise ValueError(f"listener {listener.name}: the manager has only CPQ listeners")
        return QuarantineHandler(self), CpqSMTP

    def apply_config(self, config: Config) -> None:
        super().apply_config(config)
        self._release_destination = None

    def _gateway_address(self, entry: Entry) -> tuple[str, int] | None:
        record = self.config.pvo.gateway(entry.meta["gateway"])
        return None if record is None else (record.address, record.cpq_port)

    def _destination(self, host: str) -> Destination:
        if host != THE_CPQ_RELEASE_HOST:
            raise ValueError(f"the manager delivers only to {THE_CPQ_RELEASE_HOST}, not {host}")
        if self._release_destination is None:
            cfg = self.config
            self._release_destination = CpqDestination(
                THE_CPQ_RELEASE_HOST, resolve=self._gateway_address, expect_role="gateway",
                tls_context=self.client_tls, maillog=self.maillog, ids=self.ids,
                local_hostname=cfg.hostname, source_ip=self.interface_ip(cfg.pvo.interface_name),
                timeout_s=cfg.delivery.timeout_seconds)
        return self._release_destination

    # -- settlement --------------------------------------------------------------
    def settle(self, mid: int, state: str, how: str = "manual",
               names: tuple[str, ...] | None = None) -> None:
        """Finish a message no quarantine holds any more: queue its release or drop it."""
        record = self.store.get(mid)
        assert record is not None
        held_for = time.time() - record["received_at"]
        if names is None:
            names = tuple(q["quarantine"] for q in record["quarantines"])
        if state == RELEASED:
            if not self.spool.entry_path(mid).exists():
                self.spool.put(self._release_entry(record), self.store.read_body(mid))
            self.queues.add(self._release_entry(record))
            self.maillog.info(f"MID {mid} released from all quarantines")
        self.store.finish(mid, state)
        verb = "released from" if state == RELEASED else "deleted from"
        for name in names:
            self.maillog.info(f'MID {mid} {verb} quarantine "{name}" ({how}) t={held_for:.0f}')

    def _release_entry(self, record: dict[str, Any]) -> Entry:
        meta = record["meta"]
        mid = record["id"]
        release_meta = {
            "v": VERSION, "kind": KIND_RELEASE,
            "transfer_id": f"r-{self.config.serial_number}-{mid}",
            "origin": meta["origin"], "sender": meta["sender"],
            "recipients": meta["recipients"], "quarantines": meta["quarantines"],
            "received": meta["received"], "size": meta["size"],
            "release": {"entry": mid, "stages": [q["stage"] for q in meta["quarantines"]],
                        "quarantines": [q["quarantine"] for q in record["quarantines"]]},
        }
        return Entry(
            mid=mid, sender=meta["sender"],
            recipients=[Recipient(r["rid"], r["address"], host=THE_CPQ_RELEASE_HOST)
                        for r in meta["recipients"]],
            received=record["received_at"], size=record["size"], state=QUEUED,
            meta={"cpq": release_meta, "gateway": meta["origin"]["hostname"]})

    async def recover(self) -> None:
        entries = self.spool.recover()
        for entry in entries:
            self.queues.add(entry)
        for mid in self.store.unsettled():
            state = self.store.settlement(mid)
            if state is not None:
                self.settle(mid, state, how="recovered")
        if entries:
            self.maillog.info(f"Recovered {len(entries)} releases from the spool")

    def status_gauges(self) -> dict[str, int]:
        counts = self.store.counts()
        return {"messages_in_quarantine": sum(n for n, _ in counts.values()),
                "kilobytes_in_quarantine": sum(b for _, b in counts.values()) // 1024,
                "messages_in_release_host": len(self.queues.entries)}

    # -- operator commands ---------------------------------------------------------
    async def _cmd_list(self, args: dict[str, Any]) -> dict[str, Any]:
        rows, total = self.store.list(quarantine=args.get("quarantine"),
                                      limit=int(args.get("limit", 100)),
                                      offset=int(args.get("offset", 0)))
        return {"data": {"messages": rows, "total": total, "counts": self.store.counts()}}

    async def _cmd_show(self, args: dict[str, Any]) -> dict[str, Any]:
        mid = int(args["mid"])
        record = self.store.get(mid)
        if record is None:
            raise CommandError(f"No message with MID {mid} in the quarantines.")
        body = b""
        if record["state"] == "held":
            body = self.store.read_body(mid)
        record["body"] = body.decode("utf-8", "replace")
        return {"data": record}

    async def _act(self, args: dict[str, Any], action: str) -> dict[str, Any]:
        mid = int(args["mid"])
        try:
            outcome = self.store.act(mid, action, args.get("quarantine"))
        except QuarantineError as exc:
            raise CommandError(str(exc)) from None
        if outcome.settled is not None:
            self.settle(mid, outcome.settled, names=outcome.acted_on)
        else:
            verb = "released from" if action == RELEASED else "deleted from"
            for name in outcome.acted_on:
                self.maillog.info(f'MID {mid} {verb} quarantine "{name}" (manual)')
        what = "released" if action == RELEASED else "deleted"
        text = f"MID {mid} {what} from {', '.join(outcome.acted_on)}."
        if outcome.settled == RELEASED:
            text += f" Queued for delivery on {THE_CPQ_RELEASE_HOST}."
        elif outcome.settled is None:
            text += " Still held in another quarantine."
        return {"text": text, "data": {"mid": mid, "acted_on": list(outcome.acted_on),
                                       "settled": outcome.settled}}

    async def _cmd_release(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._act(args, RELEASED)

    async def _cmd_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self._act(args, DELETED)
