"""A message that kills its scanner process: its batch is scanned again one by one, and the
message itself, after three losses, is set aside in spool/bad/ while the others pass."""

from __future__ import annotations

import asyncio
import time

from pvoq.gateway import Gateway
from pvoq.scan.verdict import PASS, ScanResult
from pvoq.scan.workers import ScannerLost
from pvoq.spool.store import QUEUED, Entry, Recipient

POISON = b"Subject: poison\r\n\r\nthis one kills the scanner\r\n"


class PoisonScanners:
    """Stands for the scanner processes: a batch (the scans asked for in one loop turn)
    that holds the poison message loses its process, and every scan in it fails."""

    def __init__(self) -> None:
        self.batch: list[bytes] = []
        self.batches: list[int] = []

    async def run(self, body: bytes, **options: object) -> ScanResult:
        batch = self.batch
        batch.append(body)
        await asyncio.sleep(0)  # the others of this turn join the same batch
        if self.batch is batch:  # the first to wake closes it
            self.batches.append(len(batch))
            self.batch = []
        if POISON in batch:
            raise ScannerLost("a scanner process died (exit code -11); it is started again")
        return ScanResult(action=PASS)


def spooled(gw: Gateway, body: bytes) -> Entry:
    entry = Entry(mid=gw.ids.next("mid"), sender="a@sender.example",
                  recipients=[Recipient(0, "x@example.com")], received=time.time(),
                  size=len(body))
    gw.spool.put(entry, body)
    return entry


def test_the_poison_message_goes_to_bad_and_its_neighbours_are_delivered(
        gateway: Gateway) -> None:
    """Three innocent messages batched with a poison one are routed; the poison one is in
    spool/bad/ after stopping a scanner three times, each time scanned alone."""
    scanners = PoisonScanners()
    gateway.engines.scanners = scanners  # type: ignore[assignment]
    innocent = [spooled(gateway, b"Subject: fine %d\r\n\r\nhello\r\n" % i) for i in range(3)]
    poison = spooled(gateway, POISON)

    async def main() -> None:
        worker = asyncio.ensure_future(gateway.workqueue.run())
        for entry in [*innocent[:2], poison, innocent[2]]:
            gateway.workqueue.submit(entry)
        deadline = time.monotonic() + 10
        while poison.mid in gateway.spool and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        worker.cancel()

    asyncio.run(main())
    gateway.maillog.flush()
    assert (gateway.spool.dir / "bad" / f"{poison.mid}.eml").read_bytes() == POISON
    assert all(gateway.spool.get(e.mid).state == QUEUED  # type: ignore[union-attr]
               for e in innocent)
    assert scanners.batches[0] == 4 and scanners.batches[-2:] == [1, 1]  # then alone
    log = gateway.maillog.path.read_text()
    assert f"MID {poison.mid} temporary failure in the pipeline: a scanner process died" in log
    assert (f"MID {poison.mid} moved to {gateway.spool.dir / 'bad'}: scanning it stopped a "
            f"scanner process 3 times; kept there for an operator") in log
