"""Release receipts: the gateway tells the manager what became of released mail.

When the delivery of a released message (or of a part of it) ends for some
recipients downstream (delivered, bounced or expired), the delivery queues'
`on_final` hook calls `Receipts.final`. It builds a `cpq.transfer.ReleaseReceipt`
for those recipients and spools it as a small message for `the.cpq.host`
(like an outbreak rescan notice: the manager reads the metadata, not the
body), **before** the recipients' outcome is handed to the spool: the spool
log keeps the order of what it is handed, so whenever the outcome is durable
the receipt is too, and a crash can only repeat the delivery (and make the
same receipt again, which the manager recognises by its transfer id and by
its recipients). The receipt is queued once it is durable; it goes to the
manager the release came from first (`meta["manager"]`), to the others
(which share its database) only when that one does not answer.

Only released mail gets receipts (`EntryMeta.released`; a released message
is never split by policy, so its MID on release is the one delivered); a
message routed to `the.cpq.host` again (quarantined anew) gets none.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from pvoq.config.model import THE_CPQ_HOST, Config
from pvoq.cpq.transfer import Origin, Outcome, ReceiptOutcome, ReleaseReceipt
from pvoq.delivery.queue import DeliveryQueues, Final
from pvoq.maillog import IdAllocator, MailLog
from pvoq.spool.store import QUEUED, Entry, EntryMeta, Recipient, Spool

RECEIPT_RECIPIENT = "release-receipts@pvoq.invalid"  # the manager reads the metadata


def receipt_id(serial: str, entry: Entry, rids: list[int]) -> str:
    """The receipt's transfer id: the same for the same recipients of the same message, so
    that a delivery repeated after a crash makes a receipt the manager already knows."""
    released = entry.meta.get("released")
    tid = released.get("transfer_id", "") if released else ""
    key = f"{tid}|{entry.mid}|{','.join(map(str, sorted(rids)))}"
    return f"d-{serial}-{entry.mid}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def build_receipt(config: Config, entry: Entry, finals: list[Final],
                  now: Callable[[], float] = time.time) -> ReleaseReceipt | None:
    """The receipt for the *finals* of released *entry* (None when it was not released)."""
    released = entry.meta.get("released")
    if not released:
        return None
    finals = [f for f in finals if f.recipient.host != THE_CPQ_HOST]
    if not finals:
        return None
    at = now()
    outcomes = tuple(ReceiptOutcome(rid=f.recipient.rid, address=f.recipient.address,
                                    outcome=Outcome(f.outcome), host=f.host,
                                    reply=" ".join(f.reply.split()), at=at) for f in finals)
    return ReleaseReceipt(
        transfer_id=receipt_id(config.serial_number, entry, [f.recipient.rid for f in finals]),
        origin=Origin(hostname=config.hostname, serial=config.serial_number, mid=entry.mid),
        release_id=str(released.get("transfer_id") or ""), entry=int(released["manager_mid"]),
        copy_of=released.get("copy_of"), manager=released.get("manager"), outcomes=outcomes)


class Receipts:
    """Makes, spools and queues the release receipts of one gateway (`on_final` hook)."""

    def __init__(self, *, config: Callable[[], Config], spool: Spool, ids: IdAllocator,
                 queues: DeliveryQueues, maillog: MailLog) -> None:
        self.config = config
        self.spool = spool
        self.ids = ids
        self.queues = queues
        self.maillog = maillog

    def final(self, entry: Entry, finals: list[Final]) -> None:
        receipt = build_receipt(self.config(), entry, finals)
        if receipt is None:
            return
        summary = ", ".join(f"RID {o.rid} {o.outcome}" for o in receipt.outcomes)
        body = (f"From: MAILER-DAEMON@{self.config().hostname}\r\n"
                f"To: {RECEIPT_RECIPIENT}\r\n"
                f"Subject: Release receipt for MID {receipt.entry}\r\n"
                f"X-Pvoq-Receipt: {receipt.transfer_id}\r\n\r\n{summary}\r\n").encode()
        meta = EntryMeta(cpq=receipt.to_json(), subject=f"release receipt MID {receipt.entry}",
                         receipt_for=entry.mid)
        if receipt.manager:
            meta["manager"] = receipt.manager
        made = Entry(mid=self.ids.next("mid"), sender="",
                     recipients=[Recipient(0, RECEIPT_RECIPIENT, host=THE_CPQ_HOST)],
                     received=time.time(), size=len(body), state=QUEUED, meta=meta)
        log = self.maillog

        def queued() -> None:
            log.info(f"MID {made.mid} release receipt {receipt.transfer_id} for MID "
                     f"{entry.mid} (manager MID {receipt.entry}: {summary}) queued for "
                     f"{THE_CPQ_HOST}")
            self.queues.add(made)

        def failed(exc: BaseException) -> None:
            log.critical(f"MID {entry.mid} release receipt {receipt.transfer_id} could not "
                         f"be spooled: {exc}")

        self.spool.put_soon(made, body, then=queued, on_error=failed)
