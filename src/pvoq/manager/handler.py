"""The manager's `cpq_listener` handler: quarantined mail from the gateways.

A gateway ships a quarantine transfer (stored once per transfer id, body and
row durable before `250`) or an outbreak rescan notice (release, extend or
delete a message it sent to "Outbreak"). The peer certificate must name the
origin gateway, and that gateway must be registered on this manager.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pvoq.config.model import Config
from pvoq.cpq.ca import certificate_problem, peer_common_name, peer_role
from pvoq.cpq.metadata import KIND_OUTBREAK_RESCAN, KIND_QUARANTINE
from pvoq.cpq.server import CpqHandler
from pvoq.quarantine.roles import SYSTEM
from pvoq.quarantine.service import SPACE_FULL, QuarantineService
from pvoq.quarantine.settings import quarantine_for
from pvoq.smtp import replies
from pvoq.smtp.server import MessageInfo, PvoqEnvelope, PvoqSession, ServerContext


class QuarantineHandler(CpqHandler):
    """The manager's `cpq_listener`: quarantined mail from the gateways.

    *config* gives the running configuration (a reload replaces it);
    *cpq_suspended* tells whether the manager's `cpq_listener` is suspended.
    """

    def __init__(self, context: ServerContext, *, config: Callable[[], Config],
                 service: QuarantineService, cpq_suspended: Callable[[], bool]) -> None:
        super().__init__(context)
        self.config = config
        self.service = service
        self.cpq_suspended = cpq_suspended

    def readiness(self, session: PvoqSession) -> list[str]:
        cfg = self.config()
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
        if self.cpq_suspended():
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
        if self.config().pvo.gateway(origin) is None:
            log.info(f"ICID {session.icid} CPQ transfer refused: unknown gateway {origin}")
            return f"554 5.7.1 Gateway {origin} is not registered on this manager"
        if meta["kind"] == KIND_OUTBREAK_RESCAN:
            return self.rescan_notice(session, meta)
        store = self.service.store
        if store.find_transfer(meta["transfer_id"]) is None:
            names = [quarantine_for(q["name"], store.settings) for q in meta["quarantines"]]
            if not self.service.make_room(len(content), names):
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
        store = self.service.store
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
            result = self.service.act(SYSTEM, action, mid, quarantine=quarantine,
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
