"""The manager's `cpq_listener` handler: quarantined mail from the gateways.

A gateway ships a quarantine transfer (stored once per transfer id, body and
row durable before `250`, group-committed with the transfers arriving beside
it: `quarantine.arrivals`), an outbreak rescan notice (release, extend or
delete a message it sent to "Outbreak") or a release receipt (what became
of a message released to it: `quarantine.receipts`, group-committed with the
receipts arriving beside it: `manager.batching`), or a migration transfer (a
message held in its local quarantines, stored as a quarantine transfer is, with its
clocks and history kept: `quarantine.export`). The peer certificate must name the
origin gateway, and that gateway must be registered on this manager.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import Session

from pvoq.config.model import Config
from pvoq.cpq import replies as cpq_replies
from pvoq.cpq.ca import certificate_problem, peer_common_name, peer_role
from pvoq.cpq.server import CpqHandler
from pvoq.cpq.transfer import (
    MigrationTransfer,
    QuarantineTransfer,
    ReleaseReceipt,
    ReleaseReceipts,
    RescanAction,
    RescanNotice,
    Transfer,
)
from pvoq.manager.batching import Batcher
from pvoq.manager.receipts import Checked, answer, answer_many, check_and_record
from pvoq.quarantine.arrivals import Arrival
from pvoq.quarantine.export import migration_arrival
from pvoq.quarantine.receipts import printable
from pvoq.quarantine.roles import SYSTEM
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.settings import quarantine_for
from pvoq.smtp import replies
from pvoq.smtp.server import MessageInfo, PvoqEnvelope, PvoqSession, PvoqSMTP, ServerContext


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
        self._receipts: Batcher[tuple[ReleaseReceipt, str], Checked] = Batcher(
            lambda items: check_and_record(self.service, items))

    async def handle_EHLO(self, server: PvoqSMTP, session: Session, envelope: Any,
                          hostname: str, responses: list[str]) -> list[str]:
        responses = await super().handle_EHLO(server, session, envelope, hostname, responses)
        if session.ssl is not None:  # receipts several to a transfer (docs/cpq.md 5.3b)
            responses.insert(len(responses) - 1, cpq_replies.XCPQ_RECEIPTS_KEYWORD.more())
        return responses

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

    async def store(self, session: PvoqSession, envelope: PvoqEnvelope, transfer: Transfer,
                    content: bytes, info: MessageInfo) -> str:
        log = self.context.maillog
        if not isinstance(transfer, QuarantineTransfer | RescanNotice | ReleaseReceipt
                          | MigrationTransfer | ReleaseReceipts):
            return str(cpq_replies.QUARANTINE_TRANSFERS_ONLY)
        origin = transfer.origin.hostname
        cert = session.peer_certificate
        if peer_role(cert) != "gateway" or peer_common_name(cert) != origin:
            log.info(f"ICID {session.icid} CPQ transfer refused: certificate "
                     f"{peer_common_name(cert)!r} ({peer_role(cert)}) does not match origin "
                     f"gateway {origin!r}")
            return cpq_replies.CERTIFICATE_MISMATCH.format(origin=origin)
        if self.config().pvo.gateway(origin) is None:
            log.info(f"ICID {session.icid} CPQ transfer refused: unknown gateway {origin}")
            return cpq_replies.UNKNOWN_GATEWAY.format(origin=origin)
        if isinstance(transfer, RescanNotice):
            return self.rescan_notice(session, transfer)
        if isinstance(transfer, ReleaseReceipt):
            envelope.counted = False  # not mail
            return await self.release_receipt(session, transfer)
        if isinstance(transfer, ReleaseReceipts):  # several in one (docs/cpq.md 5.3b)
            envelope.counted = False
            return await answer_many(self._receipts.submit, log, session.icid,
                                     session.peer_ip, transfer)
        store = self.service.store
        tid = transfer.transfer_id
        if isinstance(transfer, MigrationTransfer):
            missing = [q.name for q in transfer.quarantines if q.name not in store.settings]
            if missing:
                log.info(f"MID {envelope.mid} migration {tid} from {origin} deferred: no "
                         f'central quarantine "{missing[0]}"')
                return cpq_replies.NO_SUCH_QUARANTINE.format(name=missing[0])
        if self.service.quota_bytes > 0 and store.find_transfer(tid) is None:
            names = [quarantine_for(q.name, store.settings) for q in transfer.quarantines]
            # What is handed to the writer and not yet committed counts as used.
            if not self.service.make_room(len(content) + store.pending_bytes, names):
                log.info(f"MID {envelope.mid} refused: quarantine space full "
                         f"({tid} stays on {origin})")
                return str(cpq_replies.SPACE_FULL)
        # Group-committed with the transfers arriving beside it, off the event loop;
        # the 250 follows only once its row and body are durable.
        if isinstance(transfer, MigrationTransfer):
            return await self.migration(session, envelope, transfer, content, info)
        mid, duplicate = await store.add_async(Arrival(
            envelope.mid, transfer.to_json(), content, session.peer_ip, info.subject))
        if duplicate:
            log.info(f"MID {envelope.mid} duplicate CPQ transfer {tid} of "
                     f"MID {mid}: acknowledged, not stored again")
            return cpq_replies.ALREADY_STORED.format(transfer_id=tid, mid=mid)
        log.info(f"MID {mid} received from the ESA {session.peer_ip} for centralized "
                 f"quarantine (ESA {origin} MID {transfer.origin.mid})")
        for q in transfer.quarantines:
            log.info(f'MID {mid} quarantined to "{q.name}" ({q.reason})')
        return replies.accepted(mid)

    async def migration(self, session: PvoqSession, envelope: PvoqEnvelope,
                        transfer: MigrationTransfer, content: bytes, info: MessageInfo) -> str:
        """A message held locally on a gateway moves here: stored once per transfer id,
        group-committed like quarantine transfers, its audit record in the same commit."""
        log = self.context.maillog
        origin, tid = transfer.origin.hostname, transfer.transfer_id
        mid, duplicate = await self.service.store.add_async(migration_arrival(
            transfer, envelope.mid, content, session.peer_ip, info.subject))
        if duplicate:
            log.info(f"MID {envelope.mid} duplicate CPQ transfer {tid} of "
                     f"MID {mid}: acknowledged, not stored again")
            return cpq_replies.ALREADY_STORED.format(transfer_id=tid, mid=mid)
        for h in transfer.migration.held:
            log.info(f'MID {mid} migrated from local quarantine "{printable(h.local)}" on '
                     f'{origin} (ESA MID {transfer.origin.mid}) to "{printable(h.target)}" '
                     f"({printable(h.reason)})")
        return cpq_replies.MIGRATED.format(mid=mid)

    async def release_receipt(self, session: PvoqSession, receipt: ReleaseReceipt) -> str:
        """A gateway reports what became of a message released to it: recorded once per
        recipient (a retried receipt, or a repeated delivery's, adds nothing)."""
        # Checked and group-committed with the receipts arriving beside it, off the loop.
        checked = await self._receipts.submit((receipt, session.peer_ip))
        return answer(self.context.maillog, session.icid, receipt, checked)

    def rescan_notice(self, session: PvoqSession, notice: RescanNotice) -> str:
        """A gateway rescanned a message it sent to "Outbreak": release, extend or delete it.

        Idempotent by nature, so a retried notice needs no record of its own:
        release and delete of a message no longer held do nothing, and an
        extension sets the scheduled exit to an absolute time.
        """
        log = self.context.maillog
        origin = notice.origin
        quarantine = notice.quarantine
        store = self.service.store
        mid = store.find_transfer(notice.quarantine_transfer_id)
        tid = notice.transfer_id
        if mid is None:
            log.info(f"Outbreak rescan notice {tid} from {origin.hostname} for ESA MID "
                     f"{origin.mid}: no such message here, nothing to do")
            return cpq_replies.NOTICE_NO_SUCH_MESSAGE.format(transfer_id=tid)
        action = notice.action
        log.info(f"MID {mid} outbreak rescan by {origin.hostname} (ESA MID {origin.mid}): "
                 f"{notice.reason}; {action}")
        if action in (RescanAction.RELEASE, RescanAction.DELETE):
            result = self.service.act(SYSTEM, action.value, mid, quarantine=quarantine,
                                      how="rescanned")
            if not result.ok:
                log.info(f"MID {mid} outbreak rescan {action}: {result.text}")
            return cpq_replies.NOTICE_DONE.format(transfer_id=tid, mid=mid, action=action)
        record = store.get(mid)
        current = next((q.get("scheduled_exit") for q in (record or {}).get("quarantines", [])
                        if q["quarantine"] == quarantine and q["state"] == "held"), None)
        assert notice.retention_s is not None  # required for `extend` (RescanNotice.from_json)
        wanted = float(notice.rescanned_at) + float(notice.retention_s)
        if current is not None and wanted > float(current):
            store.delay(mid, wanted - float(current), quarantine)
            log.info(f'MID {mid} scheduled exit in quarantine "{quarantine}" extended to '
                     f"{time.ctime(wanted)} (rescanned)")
        return cpq_replies.NOTICE_DONE.format(transfer_id=tid, mid=mid,
                                              action=RescanAction.EXTEND)
