"""Release receipts arriving on the manager: checked and recorded together, off the loop.

Each release receipt a gateway sends must be about a message this manager's
database holds (or held), and that message must have come from the gateway
sending the receipt. `check_and_record` does both checks and the recording
for the receipts arriving together (`manager.batching`), in a worker thread:
one query for the origins of all of them, then one transaction for the
receipts that pass (`QuarantineService.record_receipts`). The event loop
only formats the replies and the log lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from pvoq.cpq.transfer import ReleaseReceipt
from pvoq.quarantine.receipts import Recorded
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
