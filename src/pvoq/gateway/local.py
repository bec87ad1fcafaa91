"""The gateway's local quarantines: Policy, Virus, Outbreak and custom ones, held here.

A gateway whose centralized PVO quarantines are disabled (or that has no
manager) keeps what it catches itself, in the same quarantine package as the
manager: a `QuarantineStore` at `<data_dir>/quarantine.db` with bodies under
`<data_dir>/quarantine/bodies`, a `QuarantineService` (roles, audit,
retention, default actions, early-release options, search), and an expiry
loop. A gateway switched to centralized mode keeps the messages held here
until they are migrated, released or expire: `LocalQuarantines` is built
whatever the mode.

Storing (`LocalQuarantines.hold`) happens at routing time, under the mode
in force (`centralized`), before the spool entry is removed: the stored
message takes the entry's MID and a transfer id made of the gateway's serial
number and that MID (`local_transfer_id`), so routing the entry again after
a crash between the two finds it stored and only removes the entry.

The store is built on first use (`LocalQuarantines.store`, `.service`,
`.releases` are built together then): at start when the gateway is in local
mode or already has a `quarantine.db`, else when a reload switches it to local
mode or a command or page asks. A centralized gateway that never held mail
locally thus never loads the database layer (its memory stays small).

A release (`LocalReleases`, the service's `Settler`) is delivered by the
gateway itself: a new MID is spooled with the released body and
`meta["local_release"]` saying after which stage its scan resumes, and
handed to the work queue, as a release from the manager would be. Its
transfer id (`local-release-<serial>-<mid>`) has a marker file (the gateway's received
transfer markers), so a release is spooled once across crashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvoq.config.model import Config
from pvoq.cpq.transfer import QuarantineTransfer, RescanAction, RescanNotice
from pvoq.fsutil import atomic_write
from pvoq.maillog import IdAllocator, MailLog
from pvoq.quarantine.arrivals import Arrival
from pvoq.quarantine.expiry import expiry_loop
from pvoq.quarantine.mime import apply_early_release
from pvoq.quarantine.roles import SYSTEM
from pvoq.quarantine.settings import (
    EarlyRelease,
    early_release_options,
    quarantine_for,
    quarantine_settings,
)
from pvoq.quarantine.states import State
from pvoq.scan.pipeline import Pipeline
from pvoq.scan.verdict import ScanError
from pvoq.spool.store import Entry, Recipient, ReleasedMeta, Spool

if TYPE_CHECKING:  # the database layer is loaded only when the store is built
    from pvoq.quarantine.service import QuarantineService
    from pvoq.quarantine.store import QuarantineStore

RELEASED = State.RELEASED

# The work queue's `submit(entry, body)`: the message is spooled, scan it.
Submit = Callable[[Entry, bytes], None]

LOCAL = "local"
CENTRALIZED = "centralized"


def centralized(config: Config) -> bool:
    """Whether caught mail goes to a manager: centralized PVO enabled and a manager listed."""
    return bool(config.pvo.enabled and config.pvo.all_managers)


def local_transfer_id(serial: str, mid: int) -> str:
    """The transfer id of the message *mid* held locally: the same each time it is routed."""
    return f"local-{serial}-{mid}"


def release_transfer_id(serial: str, mid: int) -> str:
    """The id of the local release of held message *mid* (its marker says it was spooled)."""
    return f"local-release-{serial}-{mid}"


class LocalReleases:
    """Settle locally held messages: a release goes to this gateway's own pipeline and
    delivery, a deletion drops the body. Implements `quarantine.service.Settler`.

    *marker* gives the marker file of a transfer id (`Gateway.transfer_marker`);
    *submit* hands a spooled release to the work queue (bound once it exists).
    """

    delivers_on = "this gateway"  # what a release's answer says (`QuarantineService.act`)

    def __init__(self, *, store: QuarantineStore, spool: Spool, ids: IdAllocator,
                 maillog: MailLog, marker: Callable[[str], Path], serial_number: str,
                 submit: Submit) -> None:
        self.store = store
        self.spool = spool
        self.ids = ids
        self.maillog = maillog
        self.marker = marker
        self.serial_number = serial_number
        self.submit = submit

    def settle(self, mid: int, state: str, how: str = "manual",
               names: tuple[str, ...] | None = None) -> None:
        """Finish a message no local quarantine holds any more: release it here or drop it."""
        record = self.store.get(mid)
        assert record is not None
        held_for = time.time() - record["received_at"]
        if names is None:
            names = tuple(q["quarantine"] for q in record["quarantines"])
        if state == RELEASED:
            self._spool_release(record, names, how)
            self.maillog.info(f"MID {mid} released from all quarantines")
        self.store.finish(mid, state)
        verb = "released from" if state == RELEASED else "deleted from"
        for name in names:
            self.maillog.info(f'MID {mid} {verb} quarantine "{name}" ({how}) t={held_for:.0f}')

    def settle_many(self, settled: list[tuple[int, str, tuple[str, ...]]], how: str) -> None:
        """Settle claimed messages now (a gateway's local quarantines are small)."""
        for mid, state, names in settled:
            try:
                self.settle(mid, state, how, names)
            except Exception as exc:  # settled by the recovery on the next start
                self.maillog.warning(f"MID {mid} settlement failed, left for recovery: {exc}")

    def _spool_release(self, record: dict[str, Any], names: tuple[str, ...],
                       how: str) -> Entry | None:
        """Spool the release of *record* for this gateway's pipeline, once (its marker)."""
        mid = int(record["id"])
        tid = release_transfer_id(self.serial_number, mid)
        marker = self.marker(tid)
        if marker.exists():
            return None  # spooled before a crash: the spool's recovery has it
        body = self.store.read_body(mid)
        if how != "expired":
            for option in self.early_release(names):
                body = apply_early_release(body, option)
        stored = QuarantineTransfer.from_json(record["meta"])
        entry = self.release_entry(record, stored, body, tid)
        self.spool.put(entry, body)
        atomic_write(marker, str(entry.mid).encode())
        self.maillog.info(f"MID {mid} rewritten to MID {entry.mid} by release from local "
                          "quarantine")
        self.submit(entry, body)
        return entry

    def release_entry(self, record: dict[str, Any], stored: QuarantineTransfer, body: bytes,
                      tid: str, *, copy_to: str | None = None) -> Entry:
        """The spool entry (a new MID) of the release of *record*, or of a copy for *copy_to*."""
        mid = int(record["id"])
        released = ReleasedMeta(
            origin_mid=int(stored.origin.mid), manager_mid=mid,
            resume_after=Pipeline.resume_point([q.stage for q in stored.quarantines]),
            transfer_id=tid, copy_of=mid if copy_to else None)
        recipients = ([Recipient(0, copy_to)] if copy_to else
                      [Recipient(r.rid, r.address) for r in stored.recipients])
        return Entry(mid=self.ids.next("mid"), sender=stored.sender, recipients=recipients,
                     received=time.time(), size=len(body), icid=stored.origin.icid or 0,
                     peer=stored.origin.peer or "", transfer_id=tid,
                     meta={"subject": str(record.get("subject") or ""),
                           "local_release": released})

    def early_release(self, names: Iterable[str]) -> list[EarlyRelease]:
        """The early-release options of the release-by-default quarantines in *names*."""
        return early_release_options(self.store.settings, names)

    def allocate_mid(self) -> int:
        return self.ids.next("mid")

    def send_copy(self, mid: int, address: str) -> int:
        """Spool a copy of held *mid* for *address*, delivered by this gateway."""
        record = self.store.get(mid)
        assert record is not None
        body = self.store.read_body(mid)
        stored = QuarantineTransfer.from_json(record["meta"])
        tid = f"local-copy-{self.serial_number}-{mid}-{self.ids.next('mid')}"
        entry = self.release_entry(record, stored, body, tid, copy_to=address)
        self.spool.put(entry, body)
        self.submit(entry, body)
        return entry.mid


class _Parts:
    """What `LocalQuarantines` builds on first use."""

    def __init__(self, store: QuarantineStore, releases: LocalReleases,
                 service: QuarantineService) -> None:
        self.store, self.releases, self.service = store, releases, service


class LocalQuarantines:
    """The gateway's local quarantines: `store`, `service`, `releases` and their expiry.

    *config* gives the configuration in force; *marker* the received-transfer
    marker of an id; *submit* the work queue's submit (late-bound: the work
    queue is built after the router, which stores here); *on_built* is called
    once the store is built (the gateway registers the quarantine commands).
    """

    def __init__(self, *, config: Callable[[], Config], spool: Spool, ids: IdAllocator,
                 maillog: MailLog, marker: Callable[[str], Path], submit: Submit,
                 on_built: Callable[[], None] | None = None) -> None:
        self.config = config
        self.spool = spool
        self.ids = ids
        self.maillog = maillog
        self.marker = marker
        self.submit = submit
        self.on_built = on_built
        self.database = config().data_dir / "quarantine.db"
        self._parts: _Parts | None = None
        self._started = False
        self._expiry_task: asyncio.Task[None] | None = None
        self._expiry_wake = asyncio.Event()

    # -- the parts, built on first use ---------------------------------------------------
    @property
    def built(self) -> bool:
        return self._parts is not None

    def needed(self) -> bool:
        """Whether the store is in use: built, in local mode, or holding mail from before."""
        return self.built or not centralized(self.config()) or self.database.exists()

    @property
    def store(self) -> QuarantineStore:
        return self._build().store

    @property
    def service(self) -> QuarantineService:
        return self._build().service

    @property
    def releases(self) -> LocalReleases:
        return self._build().releases

    def _build(self) -> _Parts:
        if self._parts is not None:
            return self._parts
        from pvoq.quarantine.audit import key_path
        from pvoq.quarantine.service import QuarantineService
        from pvoq.quarantine.store import QuarantineStore

        cfg = self.config()
        url = f"sqlite:///{self.database}"
        store = QuarantineStore(url, cfg.data_dir / "quarantine" / "bodies",
                                inline_max=int(cfg.quarantine_store.inline_body_max_kb * 1024),
                                node=cfg.hostname, settings=quarantine_settings(cfg))
        releases = LocalReleases(store=store, spool=self.spool, ids=self.ids,
                                 maillog=self.maillog, marker=self.marker,
                                 serial_number=cfg.serial_number,
                                 submit=lambda e, b: self.submit(e, b))
        service = QuarantineService(
            store, releases, self.maillog.info,
            quota_bytes=int(cfg.quarantine_store.max_size_mb * 2**20),
            audit_key_file=key_path(url, cfg.data_dir))
        self._parts = _Parts(store, releases, service)
        if self._started:
            self._start_expiry()
        if self.on_built is not None:
            self.on_built()
        return self._parts

    # -- mode -----------------------------------------------------------------------
    def mode(self) -> str:
        """`local` or `centralized`, for the configuration in force."""
        return CENTRALIZED if centralized(self.config()) else LOCAL

    def held_count(self) -> int:
        """Messages held here (0 without building the store when it was never used)."""
        return self.store.held_count() if self.needed() else 0

    # -- storing --------------------------------------------------------------------
    async def hold(self, entry: Entry, transfer: QuarantineTransfer, body: bytes) -> int:
        """Store *entry* (caught by *transfer*'s quarantines) durably, then remove it from
        the spool; its MID here. Stored before a crash: found by its transfer id, not
        stored again."""
        store = self.store
        tid = transfer.transfer_id
        if self.service.quota_bytes > 0 and store.find_transfer(tid) is None:
            names = [quarantine_for(q.name, store.settings) for q in transfer.quarantines]
            if not self.service.make_room(len(body) + store.pending_bytes, names):
                raise ScanError("local quarantine space full: the message waits in the spool",
                                stage="quarantine")
        subject = str(entry.meta.get("subject", ""))
        cfg = self.config()
        own = cfg.interface(cfg.pvo.interface_name)  # the originating ESA's address is ours
        mid, duplicate = await store.add_async(Arrival(
            entry.mid, transfer.to_json(), body, own.ip if own else "", subject))
        if duplicate:
            self.maillog.info(f"MID {entry.mid} already held in the local quarantines")
        if entry.mid in self.spool:
            await self.spool.remove_async(entry.mid)
        return mid

    def stored(self, entry: Entry) -> bool:
        """Whether *entry* is already held here (stored before a crash removed it)."""
        tid = local_transfer_id(self.config().serial_number, entry.mid)
        return self.store.find_transfer(tid) is not None

    def apply_notice(self, notice: RescanNotice) -> bool:
        """Act on an outbreak rescan of a message held here (release, delete or extend, as
        the manager does); False when the message was not held here (it went to a manager)."""
        if not self.needed():
            return False
        mid = self.store.find_transfer(notice.quarantine_transfer_id)
        if mid is None:
            return False
        action, quarantine = notice.action, notice.quarantine
        self.maillog.info(f"MID {mid} outbreak rescan: {notice.reason}; {action}")
        if action in (RescanAction.RELEASE, RescanAction.DELETE):
            result = self.service.act(SYSTEM, action.value, mid, quarantine=quarantine,
                                      how="rescanned")
            if not result.ok:
                self.maillog.info(f"MID {mid} outbreak rescan {action}: {result.text}")
            return True
        record = self.store.get(mid)
        current = next((q.get("scheduled_exit") for q in (record or {}).get("quarantines", [])
                        if q["quarantine"] == quarantine and q["state"] == "held"), None)
        if notice.retention_s is not None and current is not None:
            wanted = float(notice.rescanned_at) + float(notice.retention_s)
            if wanted > float(current):
                self.store.delay(mid, wanted - float(current), quarantine)
                self.maillog.info(f'MID {mid} scheduled exit in quarantine "{quarantine}" '
                                  f"extended to {time.ctime(wanted)} (rescanned)")
        return True

    # -- lifecycle ------------------------------------------------------------------
    def recover(self, incoming: list[Entry]) -> list[Entry]:
        """After a crash: settle what was being settled, and drop from *incoming* (and
        the spool) the entries already held here; returns the others."""
        if not self.needed():
            return incoming
        bodies, temps = self.store.sweep_bodies()
        if bodies or temps:
            self.maillog.info(f"Removed {bodies} local quarantine bodies with no held message "
                              f"and {temps} temporary files left by an interrupted write")
        pending = self.store.sync_quarantines(quarantine_settings(self.config()))
        if pending:
            self.service.apply_deleted_quarantines(pending)
        for mid in self.store.unsettled():
            state = self.store.reclaim(mid)
            if state is not None:
                self.releases.settle(mid, state, how="recovered")
        kept = []
        for entry in incoming:
            if self.stored(entry):
                self.spool.remove(entry.mid)
                self.maillog.info(f"MID {entry.mid} already held in the local quarantines")
            else:
                kept.append(entry)
        return kept

    def apply_config(self, config: Config) -> None:
        """Quarantine settings and the space quota of a reloaded configuration (the store
        is built now if the gateway switched to local mode)."""
        if not self.built and centralized(config):
            return
        pending = self.store.sync_quarantines(quarantine_settings(config))
        if pending:
            self.service.apply_deleted_quarantines(pending)
        self.service.quota_bytes = int(config.quarantine_store.max_size_mb * 2**20)

    def start(self) -> None:
        """Start the expiry loop (now if the store is built, else once it is)."""
        self._started = True
        if self.built:
            self._start_expiry()

    def _start_expiry(self) -> None:
        if self._expiry_task is None:
            self._expiry_task = asyncio.ensure_future(self._expiry_loop())

    async def stop(self) -> None:
        task = self._expiry_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._parts is not None:
            self._parts.store.close()

    async def _expiry_loop(self) -> None:
        """Apply default actions at scheduled exits, a batch at a time, between waits."""
        await expiry_loop(lambda: self.service.expire(batch=200, max_batches=1),
                          self._expiry_wake,
                          lambda: self.config().quarantine_store.expiry_interval_seconds,
                          self.maillog.warning, "Local quarantine expiry")
