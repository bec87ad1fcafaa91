"""Settlement: what becomes of a message no quarantine holds any more.

`Releases` is the manager's `Settler` (see `quarantine.service`): a message
released from every quarantine that held it is spooled for
`the.cpq.release.host` (with the early-release options of the quarantines
that released it by default applied) and queued for delivery over CPQ to
the gateway it came from; a deleted one is dropped. Large settlements (an
expiry batch, a bulk action) drain in the background, yielding to the event
loop between messages. `send_copy` spools a copy for another address.

The release entry's metadata is the CPQ `release` transfer built from the
stored quarantine transfer. Its transfer id (`release_transfer_id`) depends
only on the stored message, not on the manager that spools it: if a manager
dies between spooling a release and recording it, another one sharing the
database takes the settlement over after a while, and the gateway recognises
the second copy as the same transfer and takes it once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import time
from typing import Any

from pvoq.config.model import THE_CPQ_RELEASE_HOST
from pvoq.cpq.transfer import QuarantineTransfer, ReleasePart, ReleaseTransfer, TransferRecipient
from pvoq.delivery.queue import DeliveryQueues
from pvoq.maillog import IdAllocator, MailLog
from pvoq.quarantine.mime import apply_early_release
from pvoq.quarantine.settings import EarlyRelease, early_release_options
from pvoq.quarantine.store import RELEASED, QuarantineStore, unlink_bodies
from pvoq.spool.store import QUEUED, Entry, Recipient, Spool

STOP_WAIT_S = 10.0  # how long stop() lets the chunk under way finish
SETTLE_BATCH = 64  # settlements drained together: one spool commit, one SQL transaction
# A message being settled: MID, state, how, quarantine names, when it was received, its
# release entry (None: deleted) and the body to spool with it (None: already spooled).
Prepared = tuple[int, str, str, tuple[str, ...], float, "Entry | None", "bytes | None"]


class Releases:
    """Settle messages: queue their release to the originating gateway, or drop them.

    Implements `quarantine.service.Settler`. *serial_number* is the manager's
    (it names the release transfers; a reload cannot change it).
    """

    def __init__(self, *, store: QuarantineStore, spool: Spool, queues: DeliveryQueues,
                 ids: IdAllocator, maillog: MailLog, serial_number: str) -> None:
        self.store = store
        self.spool = spool
        self.queues = queues
        self.ids = ids
        self.maillog = maillog
        self.serial_number = serial_number
        self._backlog: collections.deque[tuple[int, str, str, tuple[str, ...]]] = \
            collections.deque()
        self._settler_task: asyncio.Task[None] | None = None
        self._stopping = False  # stop() asked the backlog's drain to end after its chunk

    def settle(self, mid: int, state: str, how: str = "manual",
               names: tuple[str, ...] | None = None) -> None:
        """Finish a message no quarantine holds any more: queue its release or drop it.

        The caller has claimed the settlement (`QuarantineStore.claim_settlement`),
        so of several manager processes exactly one gets here for a message.
        """
        record = self.store.get(mid)
        assert record is not None
        held_for = time.time() - record["received_at"]
        if names is None:
            names = tuple(q["quarantine"] for q in record["quarantines"])
        if state == RELEASED:
            spooled = self.queues.entries.get(mid) or self.spool.get(mid)
            if spooled is not None:
                # Spooled before a crash: keep that entry, its attempts and back-off.
                entry = spooled
            else:
                body = self.store.read_body(mid)
                if how != "expired":
                    for option in self.early_release(names):
                        body = apply_early_release(body, option)
                entry = self.release_entry(record, len(body))
                self.spool.put(entry, body)
            self.queues.add(entry)
            self.maillog.info(f"MID {mid} released from all quarantines")
        self.store.finish(mid, state)
        verb = "released from" if state == RELEASED else "deleted from"
        for name in names:
            self.maillog.info(f'MID {mid} {verb} quarantine "{name}" ({how}) t={held_for:.0f}')

    def settle_many(self, settled: list[tuple[int, str, tuple[str, ...]]], how: str) -> None:
        """Settle claimed messages in the background, yielding to the loop between them.

        They are claimed by this process in the database: if it stops first,
        the manager's recovery settles the rest on the next start.
        """
        self._backlog.extend((mid, state, how, names) for mid, state, names in settled)
        if self._settler_task is None or self._settler_task.done():
            self._settler_task = asyncio.ensure_future(self._drain_backlog())

    async def _drain_backlog(self) -> None:
        while self._backlog and not self._stopping:
            chunk = [self._backlog.popleft()
                     for _ in range(min(SETTLE_BATCH, len(self._backlog)))]
            try:
                await self.settle_batch(chunk)
            except Exception:  # settled one by one, so that one bad message stays alone
                for mid, state, how, names in chunk:
                    try:
                        self.settle(mid, state, how, names)
                    except Exception as exc:  # recovered on the next start: the claim stays
                        self.maillog.warning(
                            f"MID {mid} settlement failed, left for recovery: {exc}")
                    await asyncio.sleep(0)
            await asyncio.sleep(0)

    async def settle_batch(self, chunk: list[tuple[int, str, str, tuple[str, ...]]]) -> None:
        """`settle` for claimed messages together: their releases share one spool commit,
        their settlements one SQL transaction. The database and the bodies are read, the
        release entries built, and the settlements recorded in a worker thread: the event
        loop only spools, queues and logs."""
        loop = asyncio.get_running_loop()
        # Spooled before a crash? That entry stays, with its attempts and back-off.
        spooled = {mid: found for mid, state, *_ in chunk if state == RELEASED
                   for found in [self.queues.entries.get(mid) or self.spool.get(mid)]
                   if found is not None}
        prepared = await loop.run_in_executor(None, self._prepare, chunk, spooled)
        # One group commit of the spool for all of them.
        await asyncio.gather(*(self.spool.put_async(entry, body)
                               for _, _, _, _, _, entry, body in prepared
                               if entry is not None and body is not None))
        for mid, _, _, _, _, entry, _ in prepared:
            if entry is not None:
                self.queues.add(entry)
                self.maillog.info(f"MID {mid} released from all quarantines")
        # The settlements in one transaction, then the unlinks (on a busy disk one can take
        # milliseconds); an unlink a crash or a cancellation cuts short is swept at the next
        # start.
        await loop.run_in_executor(None, self._finish, [(mid, state) for mid, state, *_ in
                                                        prepared])
        now = time.time()
        for mid, state, how, names, received_at, _, _ in prepared:
            held_for = now - received_at
            verb = "released from" if state == RELEASED else "deleted from"
            for name in names:
                self.maillog.info(f'MID {mid} {verb} quarantine "{name}" ({how}) '
                                  f"t={held_for:.0f}")

    def _prepare(self, chunk: list[tuple[int, str, str, tuple[str, ...]]],
                 spooled: dict[int, Entry]) -> list[Prepared]:
        """In a worker thread: each message of *chunk* with its release entry (None for a
        deletion) and the body to spool with it (None when already spooled)."""
        records = self.store.get_many([mid for mid, *_ in chunk])
        prepared: list[Prepared] = []
        for mid, state, how, names in chunk:
            record = records.get(mid)
            assert record is not None
            entry: Entry | None = None
            body: bytes | None = None
            if state == RELEASED:
                entry = spooled.get(mid)
                if entry is None:
                    body = self.store.read_body(mid)
                    if how != "expired":
                        for option in self.early_release(names):
                            body = apply_early_release(body, option)
                    entry = self.release_entry(record, len(body))
            prepared.append((mid, state, how, names, float(record["received_at"]), entry,
                             body))
        return prepared

    def _finish(self, settled: list[tuple[int, str]]) -> None:
        """In a worker thread: record the settlements, then unlink the bodies."""
        unlink_bodies(self.store.finish_many(settled, unlink=False))

    async def stop(self) -> None:
        """Stop draining the backlog after the chunk under way (cut short if it takes
        longer than STOP_WAIT_S); the claims left are settled on the next start."""
        task = self._settler_task
        if task is None or task.done():
            return
        self._stopping = True
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_WAIT_S)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            self._stopping = False

    def early_release(self, names: tuple[str, ...]) -> list[EarlyRelease]:
        """The early-release options of the release-by-default quarantines in *names*."""
        return early_release_options(self.store.settings, names)

    def allocate_mid(self) -> int:
        """A new MID (a per-recipient action splits a message in two)."""
        return self.ids.next("mid")

    def send_copy(self, mid: int, address: str) -> int:
        """Spool a copy of *mid* for *address*, delivered by the originating gateway."""
        record = self.store.get(mid)
        assert record is not None
        copy_mid = self.ids.next("mid")
        body = self.store.read_body(mid)
        entry = self.release_entry(record, len(body), copy_mid=copy_mid, to=address)
        self.spool.put(entry, body)
        self.queues.add(entry)
        return copy_mid

    def release_entry(self, record: dict[str, Any], size: int | None = None, *,
                      copy_mid: int | None = None, to: str | None = None) -> Entry:
        """The spool entry of a release (or of a copy for *to*) of the stored *record*."""
        stored = QuarantineTransfer.from_json(record["meta"])
        mid = copy_mid or record["id"]
        recipients = stored.recipients if to is None else (TransferRecipient(0, to),)
        transfer_id = (f"r-{self.serial_number}-{mid}" if copy_mid is not None
                       else release_transfer_id(record))
        release = ReleaseTransfer(
            transfer_id=transfer_id, origin=stored.origin,
            sender=stored.sender, recipients=recipients, quarantines=stored.quarantines,
            received=stored.received, size=size or stored.size,
            release=ReleasePart(entry=mid, stages=tuple(q.stage for q in stored.quarantines),
                                quarantines=tuple(q["quarantine"]
                                                  for q in record["quarantines"]),
                                copy_of=record["id"] if copy_mid else None))
        return Entry(
            mid=mid, sender=stored.sender,
            recipients=[Recipient(r.rid, r.address, host=THE_CPQ_RELEASE_HOST)
                        for r in recipients],
            received=record["received_at"], size=size or record["size"], state=QUEUED,
            meta={"cpq": release.to_json(), "gateway": stored.origin.hostname})


def release_transfer_id(record: dict[str, Any]) -> str:
    """The transfer id of the release of the stored *record*, the same from every manager
    sharing its database: its MID and a digest of the quarantine transfer that brought it
    (unique across databases, whose MIDs may coincide)."""
    origin = record.get("transfer_id") or record["meta"].get("transfer_id", "")
    digest = hashlib.sha256(str(origin).encode()).hexdigest()[:16]
    return f"r-{record['id']}-{digest}"
