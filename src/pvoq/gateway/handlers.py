"""The gateway's SMTP handlers: its public listeners and its `cpq_listener`.

A public listener accepts mail into the spool (fsync before `250`) and hands
it to the pipeline; the `cpq_listener` accepts releases from the manager,
checks who sends them and for whom, recognises a retried transfer, and
spools them for the stages after the one that quarantined them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pvoq.config.model import Config
from pvoq.cpq import replies as cpq_replies
from pvoq.cpq.ca import peer_common_name, peer_role
from pvoq.cpq.server import CpqHandler
from pvoq.cpq.transfer import ReleaseTransfer, RescanRequest, Transfer
from pvoq.fsutil import FILE_MODE, fsync_dir
from pvoq.scan.pipeline import Pipeline
from pvoq.smtp import replies
from pvoq.smtp.server import (
    BaseHandler,
    MessageInfo,
    PvoqEnvelope,
    PvoqSession,
    PvoqSMTP,
    ServerContext,
)
from pvoq.spool.store import Entry, Recipient, Spool

# The work queue's `submit(entry, body)`: the message is spooled, scan it.
Submit = Callable[[Entry, bytes], None]
# A dry rescan (`gateway.dryrun.DryRescan`): (request, body, MID, manager) -> the reply.
Rescan = Callable[[RescanRequest, bytes, int, str], Awaitable[str]]

# How the arrival of a message from the manager ends its log line: AsyncOS's wording
# for a release; a Send Copy (the manager still holds the message) says so.
RECEIVED_RELEASE = "on release from central quarantine"
RECEIVED_COPY = "as a copy from central quarantine"
MARKER_MODE = FILE_MODE
MARKER_ATTEMPTS = 4    # fsyncs tried for a received transfer's marker before giving up
MARKER_RETRY_S = 2.0   # between them


def transfer_marker(directory: Path, transfer_id: str) -> Path:
    """The file that says a CPQ transfer was received (exactly once across retries)."""
    return directory / hashlib.sha256(transfer_id.encode()).hexdigest()


def _create_marker(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, MARKER_MODE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class TransferMarkers:
    """Received-transfer markers made durable together (group commit).

    A marker says a transfer was received; only its existence counts (its
    content, the MID, is for whoever looks). `create` makes it in place off
    the event loop and returns its place in line; `durable` waits for a fsync
    of the directory that began after the file was created: the releases
    arriving together share one fsync, not a file fsync, a rename and a
    directory fsync each (`write` is both). A failed fsync fails the waiters
    it was meant to cover, and only those; a crash before it leaves a marker
    that may vanish, whose spool entry, already durable, brings it back at
    the next start.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._wanted = 0   # markers created so far (each waits for a sync covering it)
        self._synced = 0   # markers covered by the last successful sync
        self._running: tuple[int, asyncio.Future[None]] | None = None

    async def write(self, path: Path, data: bytes) -> None:
        """Create *path* with *data*; return once its directory entry is durable."""
        await self.durable(await self.create(path, data))

    async def create(self, path: Path, data: bytes) -> int:
        """Create *path* with *data* (it exists once this returns, maybe not durably yet);
        its place in line, for `durable`."""
        await asyncio.get_running_loop().run_in_executor(None, _create_marker, path, data)
        self._wanted += 1
        return self._wanted

    async def durable(self, mine: int) -> None:
        """Return once the marker created *mine*-th is durable (a fsync of the directory
        begun after it was created has succeeded); raise if the fsync meant for it fails."""
        loop = asyncio.get_running_loop()
        while self._synced < mine:
            if self._running is None:
                self._running = (self._wanted, loop.run_in_executor(
                    None, fsync_dir, self.directory))
            upto, future = self._running
            try:
                await asyncio.shield(future)
            except Exception:
                if mine <= upto:
                    raise  # the sync meant to cover this marker failed
            finally:  # the first waiter back records the round
                if self._running is not None and self._running[1] is future \
                        and future.done():
                    self._running = None
                    if not future.cancelled() and future.exception() is None:
                        self._synced = max(self._synced, upto)


class PublicHandler(BaseHandler):
    """A public/private SMTP listener of the gateway: accept into the spool."""

    commits_whole = True  # the work queue gets the message from the spool commit itself

    def __init__(self, context: ServerContext, *, spool: Spool, submit: Submit) -> None:
        super().__init__(context)
        self.spool = spool
        self.submit = submit

    async def accept(self, server: PvoqSMTP, session: PvoqSession, envelope: PvoqEnvelope,
                     content: bytes, info: MessageInfo) -> str:
        entry = Entry(
            mid=envelope.mid, sender=envelope.mail_from or "",
            recipients=[Recipient(i, a) for i, a in enumerate(envelope.rcpt_tos)],
            received=time.time(), size=len(content), icid=session.icid,
            peer=session.peer_ip, meta={"subject": info.subject})
        if session.decision is not None:
            entry.meta["sender_group"] = session.decision.group
        submit = self.submit
        await self.spool.put_async(entry, content, then=lambda: submit(entry, content))
        return replies.accepted(entry.mid)


class ReleaseHandler(CpqHandler):
    """The gateway's `cpq_listener`: released mail from the manager."""

    def __init__(self, context: ServerContext, *, config: Callable[[], Config], spool: Spool,
                 marker: Callable[[str], Path], submit: Submit,
                 rescan: Rescan | None = None) -> None:
        super().__init__(context)
        self.config = config  # the configuration in force
        self.spool = spool
        self.marker = marker  # transfer id -> its marker file
        self.submit = submit
        self.rescan = rescan  # dry rescans of held messages (None: refused as not a release)
        self._receiving: set[str] = set()  # transfer ids being stored right now
        self.markers = TransferMarkers(marker("").parent)
        self._pending: set[asyncio.Future[None]] = set()  # releases waiting for their marker

    async def store(self, session: PvoqSession, envelope: PvoqEnvelope, transfer: Transfer,
                    content: bytes, info: MessageInfo) -> str:
        log = self.context.maillog
        dry = isinstance(transfer, RescanRequest) and self.rescan is not None
        if not isinstance(transfer, ReleaseTransfer) and not dry:
            return str(cpq_replies.RELEASES_ONLY)
        role = peer_role(session.peer_certificate)
        if role != "manager":
            log.info(f"ICID {session.icid} CPQ release refused: peer certificate role {role!r}")
            return str(cpq_replies.MANAGER_ONLY)
        config = self.config()
        name = peer_common_name(session.peer_certificate)
        if config.pvo.manager_named(name) is None:  # any listed manager, by its registered name
            names = ", ".join(repr(m.hostname) for m in config.pvo.all_managers)
            log.info(f"ICID {session.icid} CPQ release refused: peer {session.peer_ip} "
                     f"presented a certificate of {name!r}, this gateway's managers are "
                     f"{names or 'none'}")
            return cpq_replies.NOT_OUR_MANAGER.format(name=name)
        origin = transfer.origin
        target = origin.hostname
        if target.lower() != config.hostname.lower():
            log.info(f"ICID {session.icid} CPQ release refused: MID originally on {target}, "
                     f"this is {config.hostname}")
            return cpq_replies.OTHER_GATEWAY.format(target=target, hostname=config.hostname)
        if isinstance(transfer, RescanRequest):
            assert self.rescan is not None
            envelope.counted = False  # not mail: nothing is kept, nothing counted
            return await self.rescan(transfer, content, envelope.mid, name or "?")
        assert isinstance(transfer, ReleaseTransfer)
        tid = transfer.transfer_id
        if tid in self._receiving:  # the same transfer, retried while its first copy is stored
            log.info(f"MID {envelope.mid} CPQ transfer {tid} is being stored by another "
                     "session: deferred")
            return cpq_replies.BEING_STORED.format(transfer_id=tid)
        marker = self.marker(tid)
        if marker.exists():
            log.info(f"MID {envelope.mid} duplicate CPQ transfer {tid} "
                     "acknowledged, not stored again")
            return cpq_replies.ALREADY_RECEIVED.format(transfer_id=tid)
        release = transfer.release
        entry = Entry(
            mid=envelope.mid, sender=transfer.sender,
            recipients=[Recipient(r.rid, r.address) for r in transfer.recipients],
            received=time.time(), size=len(content), icid=session.icid, peer=session.peer_ip,
            transfer_id=tid,
            meta={"subject": info.subject, "released": {
                "origin_mid": origin.mid, "manager_mid": release.entry,
                "resume_after": Pipeline.resume_point(list(release.stages)),
                "transfer_id": tid, "manager": name or "", "copy_of": release.copy_of}})
        self._receiving.add(tid)
        try:
            await self.spool.put_async(entry, content)
            # The 250 waits for the spool entry, not for the marker's fsync: until the
            # marker is durable the entry is not processed (so not delivered and removed),
            # and a durable entry brings its marker back at the next start.
            place = await self.markers.create(marker, str(entry.mid).encode())
        finally:
            self._receiving.discard(tid)
        how = RECEIVED_COPY if release.copy_of is not None else RECEIVED_RELEASE
        log.info(f"MID {entry.mid} received from the SMA {session.peer_ip} "
                 f"(MID originally {origin.mid}) {how}")
        task = asyncio.ensure_future(self._submit_when_durable(place, entry, content))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return replies.accepted(entry.mid)

    async def drain(self) -> None:
        """Wait until every release stored so far was handed to the work queue (or given up
        for the next start)."""
        while self._pending:
            await asyncio.gather(*self._pending)

    async def _submit_when_durable(self, place: int, entry: Entry, content: bytes) -> None:
        """Hand a stored release to the work queue once its marker is durable (a failed
        fsync is tried again a few times; then the next start takes it over)."""
        for attempt in range(MARKER_ATTEMPTS):
            try:
                await self.markers.durable(place)
                break
            except OSError as exc:
                last = attempt + 1 == MARKER_ATTEMPTS
                self.context.maillog.critical(
                    f"MID {entry.mid} CPQ transfer marker could not be made durable ({exc}): "
                    + ("the message stays in the spool until the next start" if last
                       else f"trying again in {MARKER_RETRY_S:g} s"))
                if last:
                    return
                await asyncio.sleep(MARKER_RETRY_S)
        self.submit(entry, content)
