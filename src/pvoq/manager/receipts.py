"""Release receipts arriving on the manager: checked and recorded together, off the loop.

Each release receipt a gateway sends must be about a message this manager's
database holds (or held), and that message must have come from the gateway
sending the receipt. `check_and_record` does both checks and the recording
for the receipts arriving together (`manager.batching`), in a worker thread:
one query for the origins of all of them, then one transaction for the
receipts that pass (`QuarantineService.record_receipts`). The event loop
only formats the replies and the log lines (`answer`).

A `release_receipts` transfer (several receipts in one, docs/cpq.md 5.3b)
is answered by `answer_many`: its receipts go to the same batch, each is
checked, recorded and logged exactly as a receipt of its own would be, and
the transfer gets one `250` counting what became of them. A receipt about a
message of another gateway is refused and logged, the others recorded: it
can never succeed, so holding the rest back for it would only have the
gateway send them again and again. A failure to record (the database) is
temporary for the whole transfer (`451`): the receipts already recorded are
known on the retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pvoq.cpq import replies as cpq_replies
from pvoq.cpq.transfer import ReleaseReceipt, ReleaseReceipts
from pvoq.maillog import MailLog
from pvoq.quarantine.receipts import Recorded, printable
from pvoq.quarantine.service import QuarantineService


@dataclass(frozen=True)
class Checked:
    """What became of one receipt.

    `recorded` is set when it was recorded (its recipients new here and those
    known before); otherwise it was refused: `origin` None means no such
    message here, else `origin` names the gateway the message came from (not
    the one that sent the receipt).
    """

    recorded: Recorded | None
    origin: str | None = None


def check_and_record(service: QuarantineService, items: list[tuple[ReleaseReceipt, str]]
                     ) -> list[Checked | Exception]:
    """Check and record `(receipt, peer address)` items arriving together: one outcome
    each, in order (an exception in the place of a receipt whose recording failed)."""
    origins = service.store.origin_hosts([receipt.message for receipt, _ in items])
    outcomes: list[Checked | Exception] = []
    wanted: list[int] = []
    for index, (receipt, _) in enumerate(items):
        origin = origins.get(receipt.message)
        if origin is None:
            outcomes.append(Checked(None))
        elif origin.lower() != receipt.origin.hostname.lower():
            outcomes.append(Checked(None, origin))
        else:
            outcomes.append(Checked(None, origin))  # replaced below once recorded
            wanted.append(index)
    if wanted:
        recorded = service.record_receipts([items[i] for i in wanted])
        for index, result in zip(wanted, recorded, strict=True):
            current = outcomes[index]
            assert isinstance(current, Checked)
            outcomes[index] = (result if isinstance(result, Exception)
                               else Checked(result, current.origin))
    return outcomes


def answer(log: MailLog, icid: int, receipt: ReleaseReceipt, checked: Checked) -> str:
    """The mail_logs lines of one receipt once *checked*, and its reply."""
    mid, tid, origin = receipt.message, receipt.transfer_id, receipt.origin.hostname
    recorded = checked.recorded
    if recorded is None and checked.origin is None:
        log.info(f"Release receipt {tid} from {origin} for MID {mid}: no such message "
                 "here, nothing to do")
        return cpq_replies.RECEIPT_NO_SUCH_MESSAGE.format(transfer_id=tid)
    if recorded is None:
        log.info(f"ICID {icid} CPQ transfer refused: release receipt {tid} from "
                 f"{origin} for MID {mid}, which came from {checked.origin}")
        return cpq_replies.RECEIPT_OTHER_GATEWAY.format(mid=mid, origin=origin)
    if not recorded.new:
        log.info(f"MID {mid} duplicate release receipt {tid} from {origin}: "
                 "acknowledged, not recorded again")
        return cpq_replies.RECEIPT_KNOWN.format(transfer_id=tid, mid=mid)
    copy = f" (copy MID {receipt.entry})" if receipt.copy_of is not None else ""
    for o in receipt.outcomes:
        if o.rid not in recorded.new:
            continue
        where = "" if o.outcome == "expired" else f" to {printable(o.host)}"
        log.info(f"MID {mid}{copy} release receipt {tid} from {origin} (ESA MID "
                 f"{receipt.origin.mid}): RID {o.rid} {o.outcome}{where}: "
                 f"'{printable(o.reply)}'")
    return cpq_replies.RECEIPT_RECORDED.format(transfer_id=tid, mid=mid)


Submit = Callable[[tuple[ReleaseReceipt, str]], Awaitable[Checked]]


async def answer_many(submit: Submit, log: MailLog, icid: int, peer: str,
                      bundle: ReleaseReceipts) -> str:
    """Check, record and log each receipt of *bundle* (submitted together: one batch);
    one reply for the transfer."""
    results = await asyncio.gather(*(submit((r, peer)) for r in bundle.receipts),
                                   return_exceptions=True)
    counts = {"recorded": 0, "known": 0, "unknown": 0, "refused": 0}
    failed: BaseException | None = None
    for receipt, checked in zip(bundle.receipts, results, strict=True):
        if isinstance(checked, BaseException):
            failed = failed or checked
            continue
        answer(log, icid, receipt, checked)
        if checked.recorded is None:
            counts["unknown" if checked.origin is None else "refused"] += 1
        else:
            counts["recorded" if checked.recorded.new else "known"] += 1
    tid = bundle.transfer_id
    if failed is not None:
        log.warning(f"ICID {icid} release receipts {tid} from {bundle.origin.hostname}: "
                    f"not all recorded ({type(failed).__name__}: {failed}); the gateway "
                    "sends them again")
        return cpq_replies.RECEIPTS_FAILED.format(transfer_id=tid)
    return cpq_replies.RECEIPTS_DONE.format(transfer_id=tid, **counts)
