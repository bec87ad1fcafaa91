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

Receipts that are due together travel together (`ReceiptBundler`, the
delivery queue's `Bundler`): the receipts due in one delivery pass of
`the.cpq.host` are cut into groups (at most `MAX_BUNDLE` receipts and
`MAX_BUNDLE_CHARS` of metadata each), and a group goes as one transfer of
kind `release_receipts` to a manager that offers the `XCPQ-RECEIPTS` EHLO
keyword (one receipt per transfer to a manager that does not: an older
version). The pass is the group commit: a lone receipt goes at once; those
made while a pass is on the wire wait for its reply and go together in the
next. Each receipt stays a spool entry of its own until the manager's `250`
for the transfer that carried it.

Only released mail gets receipts (`EntryMeta.released`; a released message
is never split by policy, so its MID on release is the one delivered); a
message routed to `the.cpq.host` again (quarantined anew) gets none.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from pvoq.config.model import THE_CPQ_HOST, Config
from pvoq.cpq.metadata import encode_chunks
from pvoq.cpq.transfer import (
    MAX_RECEIPTS,
    VERSION,
    Kind,
    Origin,
    Outcome,
    ReceiptOutcome,
    ReleaseReceipt,
)
from pvoq.delivery.queue import Bundle, Bundler, DeliveryQueues, Final, Item, Target
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.client import SmtpConnection
from pvoq.spool.store import QUEUED, Entry, EntryMeta, Recipient, Spool

RECEIPT_RECIPIENT = "release-receipts@pvoq.invalid"  # the manager reads the metadata
RECEIPTS_KEYWORD = "xcpq-receipts"  # EHLO: the manager takes kind `release_receipts`
MAX_BUNDLE = 200             # receipts in one `release_receipts` transfer
MAX_BUNDLE_CHARS = 300_000   # of their metadata (base64), well inside `cpq.metadata`'s bound


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


def is_receipt(entry: Entry) -> bool:
    """Whether *entry* is a release receipt waiting for the manager."""
    cpq = entry.meta.get("cpq")
    return "receipt_for" in entry.meta and isinstance(cpq, dict) \
        and cpq.get("kind") == Kind.RELEASE_RECEIPT


def bundle_id(serial: str, receipt_ids: list[str]) -> str:
    """A `release_receipts` transfer's id: the same for the same receipts."""
    digest = hashlib.sha256("|".join(sorted(receipt_ids)).encode()).hexdigest()[:12]
    return f"b-{serial}-{digest}"


class ReceiptBundler(Bundler):
    """The release receipts of a delivery pass of `the.cpq.host`, several to a transfer."""

    def __init__(self, config: Callable[[], Config]) -> None:
        self.config = config

    def groups(self, items: list[Item]) -> list[list[Item]]:
        groups: list[list[Item]] = []
        current: list[Item] = []
        chars = 0
        for item in items:
            if not is_receipt(item[0]):
                groups.append([item])
                continue
            size = sum(len(line) for line in item[2].extra)
            if current and (len(current) >= MAX_BUNDLE or chars + size > MAX_BUNDLE_CHARS):
                groups.append(current)
                current, chars = [], 0
            current.append(item)
            chars += size
        if current:
            groups.append(current)
        return groups

    def bundle(self, conn: SmtpConnection, group: list[Item]) -> Bundle | None:
        if not conn.supports(RECEIPTS_KEYWORD) or not all(is_receipt(e) for e, _, _ in group):
            return None  # a manager of an older version: one receipt per transfer
        offered = conn.extensions.get(RECEIPTS_KEYWORD, "").split()
        limit = int(offered[0]) if offered and offered[0].isdigit() else MAX_RECEIPTS
        if len(group) > limit:
            return None
        cfg = self.config()
        receipts = [entry.meta["cpq"] for entry, _, _ in group]
        tid = bundle_id(cfg.serial_number, [str(r.get("transfer_id")) for r in receipts])
        first = group[0][0]
        meta = {"v": VERSION, "kind": Kind.RELEASE_RECEIPTS.value, "transfer_id": tid,
                "origin": Origin(hostname=cfg.hostname, serial=cfg.serial_number,
                                 mid=first.mid).to_json(),
                "receipts": receipts}
        lines = "".join(f"MID {e.mid}: {r.get('transfer_id')}\r\n"
                        for (e, _, _), r in zip(group, receipts, strict=True))
        body = (f"From: MAILER-DAEMON@{cfg.hostname}\r\n"
                f"To: {RECEIPT_RECIPIENT}\r\n"
                f"Subject: Release receipts ({len(group)})\r\n"
                f"X-Pvoq-Receipts: {tid}\r\n\r\n{lines}").encode()
        target = group[0][2]
        return Bundle(items=group, sender="", recipient=RECEIPT_RECIPIENT, body=body,
                      target=Target(target.host, target.port,
                                    extra=[f"XCPQ META {c}" for c in encode_chunks(meta)],
                                    start_note=target.start_note, done_note=target.done_note))
