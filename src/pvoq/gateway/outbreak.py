"""The gateway's outbreak rules in force and the copies kept for their rescans.

Owns reloading the rules file (`outbreak reload`, or a watcher when the file
changes), rescanning the kept outbreak copies against the new rules
(`scan.keeper`), and shipping the resulting notices to the manager on
`the.cpq.host`, each spooled and queued like a quarantined message; a notice
about a message held in the gateway's local quarantines is applied there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pvoq.admin.protocol import CommandError
from pvoq.config.model import THE_CPQ_HOST, Config
from pvoq.cpq.transfer import RescanNotice
from pvoq.delivery.queue import DeliveryQueues
from pvoq.gateway.processing import ScanEngines
from pvoq.maillog import IdAllocator, MailLog
from pvoq.scan.keeper import OutbreakKeeper
from pvoq.scan.outbreak import RulesError
from pvoq.scan.rescan import Decision
from pvoq.spool.store import QUEUED, Entry, Recipient, Spool

NOTICE_RECIPIENT = "outbreak-notices@pvoq.invalid"  # the manager reads the metadata, not this


class OutbreakRules:
    """Reload the outbreak rules, rescan the kept copies, ship the notices to the manager."""

    def __init__(self, *, config: Callable[[], Config], engines: ScanEngines,
                 keeper: OutbreakKeeper, spool: Spool, ids: IdAllocator, maillog: MailLog,
                 queues: DeliveryQueues,
                 apply_locally: Callable[[RescanNotice], bool] | None = None) -> None:
        self.config = config
        self.apply_locally = apply_locally  # True: the message was held here, done
        self.engines = engines
        self.keeper = keeper
        self.spool = spool
        self.ids = ids
        self.maillog = maillog
        self.queues = queues

    async def watch(self) -> None:
        """Reload the rules file when it changes, and rescan the kept copies."""
        while True:
            await asyncio.sleep(self.config().scan.outbreak.check_interval_seconds)
            try:
                if self.engines.pipeline.rules.changed():
                    await self.reload()
            except Exception as exc:  # the watcher must outlive a bad file or a bug
                self.maillog.warning(f"Outbreak rules watcher: {type(exc).__name__}: {exc}")

    async def reload(self) -> str:
        """Read the rules file again; a bad one is refused (CommandError), the old rules kept."""
        pipeline = self.engines.pipeline
        try:
            changed = pipeline.reload_rules()
        except RulesError as exc:
            self.maillog.warning(f"Outbreak rules update refused, the rules in force are "
                                 f"kept: {exc}")
            raise CommandError(f"Outbreak rules update refused: {exc}") from None
        current = pipeline.rules.current
        if not changed:
            return f"Outbreak rules unchanged (version {current.version or '-'})."
        self.engines.scanners.rules_changed()
        self.maillog.info(f"Outbreak rules updated from {pipeline.rules.path}: version "
                          f"{current.version or '-'}, {len(current.rules)} rules")
        decisions = await self.rescan()
        return (f"Outbreak rules updated to version {current.version or '-'}; "
                f"{len(decisions)} kept messages rescanned.")

    async def rescan(self) -> list[Decision]:
        """Rescan the kept outbreak copies against the rules in force (scan.keeper)."""
        decisions = await self.keeper.rescan(self.engines.pipeline, self.config().scan)
        await self.ship_notices()
        return decisions

    async def ship_notices(self) -> int:
        """Queue each pending rescan notice for the manager on `the.cpq.host`.

        A notice travels like a quarantined message (spooled, retried) with
        `kind: outbreak_rescan` metadata and a short explanatory body. It
        leaves the outbox only once spooled; a crash in between spools it
        twice, which does no harm: what the manager does with a notice
        (release, delete, set an exit time) is idempotent.
        """
        shipped = 0
        for notice in self.keeper.notices.pending():
            tid, action, mid = notice.transfer_id, notice.action, notice.origin.mid
            if self.apply_locally is not None and self.apply_locally(notice):
                self.keeper.notices.done(tid)  # applied (idempotent, like the manager's)
                continue
            body = (f"From: MAILER-DAEMON@{self.config().hostname}\r\n"
                    f"To: {NOTICE_RECIPIENT}\r\n"
                    f"Subject: Outbreak rescan: {action} MID {mid}\r\n"
                    f"X-Pvoq-Notice: {tid}\r\n\r\n{notice.reason}\r\n").encode()
            entry = Entry(mid=self.ids.next("mid"), sender="",
                          recipients=[Recipient(0, NOTICE_RECIPIENT, host=THE_CPQ_HOST)],
                          received=time.time(), size=len(body), state=QUEUED,
                          meta={"cpq": notice.to_json(), "subject": f"outbreak rescan {action}",
                                "notice_for": mid})
            await self.spool.put_async(entry, body)
            self.keeper.notices.done(tid)
            self.maillog.info(f"MID {entry.mid} outbreak rescan notice for MID {mid} "
                              f"({action}) queued for {THE_CPQ_HOST}")
            self.queues.add(entry)
            shipped += 1
        return shipped
