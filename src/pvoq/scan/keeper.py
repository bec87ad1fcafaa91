"""The gateway's side of outbreak quarantining: keep a copy, rescan it, tell the manager.

Owns the lifecycle of the copies the gateway keeps of what it sends to the
Outbreak quarantine: kept when the message is quarantined, forgotten when
its release comes back (or its retention has run out), rescanned whenever
the outbreak rules change, each rescan decision logged in mail_logs and
recorded as a durable notice for the manager (`scan.rescan` has the file
formats and the pure decision). It never sends anything over the network
and never changes the spool: the gateway ships the notices to the manager
over CPQ (kind `outbreak_rescan`, `gateway.outbreak.OutbreakRules.ship_notices`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from pvoq.config.model import ScanSettings
from pvoq.maillog import MailLog
from pvoq.scan.pipeline import OUTBREAK_FILTERS, Pipeline
from pvoq.scan.rescan import (
    EXTEND,
    RELEASE,
    Decision,
    NoticeOutbox,
    OutbreakCopies,
    OutbreakCopy,
    decide,
    notice,
)
from pvoq.scan.verdict import ScanError, Verdict


class OutbreakKeeper:
    def __init__(self, data_dir: Path, maillog: MailLog, *, hostname: str, serial: str) -> None:
        self.copies = OutbreakCopies(data_dir / "outbreak_copies")
        self.notices = NoticeOutbox(data_dir / "outbreak_notices")
        self.log = maillog
        if self.copies.orphans_removed:
            maillog.info(f"Removed {self.copies.orphans_removed} outbreak copy bodies with no "
                         f"entry (a copy cut by a crash before its entry was written)")
        self.hostname = hostname
        self.serial = serial

    def keep(self, *, mid: int, transfer_id: str, sender: str, recipients: list[str],
             verdicts: list[Verdict], body: bytes | Callable[[], bytes]) -> None:
        """Keep a copy if one of *verdicts* is an outbreak verdict (durable on return).
        *body* may be a function that reads it: called only if a copy is kept."""
        outbreak = next((v for v in verdicts if v.stage == OUTBREAK_FILTERS), None)
        if outbreak is None:
            return
        if callable(body):
            body = body()
        self.copies.keep(OutbreakCopy(
            mid=mid, transfer_id=transfer_id, sender=sender, recipients=recipients,
            rule=outbreak.reason.removeprefix("VOF rule:"),
            threat_level=outbreak.threat_level or 0, quarantined_at=time.time(),
            retention_s=outbreak.retention_s or 0.0), body)

    def released(self, origin_mid: int, new_mid: int) -> None:
        if self.copies.forget(origin_mid):
            self.log.info(f"MID {origin_mid} outbreak copy discarded: released as MID {new_mid}")

    async def rescan(self, pipeline: Pipeline, settings: ScanSettings) -> list[Decision]:
        """Rescan every kept copy against the rules in force; tell the manager what to do."""
        engine = pipeline.engine if settings.antivirus_enabled else None
        decisions: list[Decision] = []
        for copy in self.copies.all():
            if copy.expires_at < time.time():  # the manager's retention has run out too
                self.copies.forget(copy.mid)
                self.log.info(f"MID {copy.mid} outbreak copy discarded: retention expired")
                continue
            body = self.copies.body(copy.mid)
            try:
                decision = await asyncio.to_thread(
                    decide, copy, body, pipeline.rules.current,
                    threshold=settings.outbreak.quarantine_threat_level,
                    retention_viral_s=settings.outbreak.retention_viral_seconds,
                    retention_other_s=settings.outbreak.retention_other_seconds, engine=engine)
            except ScanError as exc:
                self.log.warning(f"MID {copy.mid} outbreak rescan failed, kept for the next "
                                 f"one: {exc}")
                continue
            self.tell_manager(copy, decision)
            decisions.append(decision)
        return decisions

    def tell_manager(self, copy: OutbreakCopy, decision: Decision) -> None:
        """Record a decision durably for the manager, log it, and update or drop the copy.

        The notice waits in `<data>/outbreak_notices/` (`scan.rescan.notice` has its
        shape) until the gateway has spooled it for `the.cpq.host`.
        """
        self.notices.put(notice(decision, copy, hostname=self.hostname, serial=self.serial))
        if decision.action == RELEASE:
            self.log.info(f'MID {copy.mid} rescanned: {decision.reason}; release from '
                          f'centralized quarantine "Outbreak" requested (rescanned)')
            self.copies.forget(copy.mid)
        elif decision.action == EXTEND:
            retention = decision.retention_s or copy.retention_s
            copy.quarantined_at, copy.retention_s = time.time(), retention
            copy.rule = decision.rule
            self.copies.update(copy)
            self.log.info(f'MID {copy.mid} rescanned: {decision.reason}; retention in '
                          f'centralized quarantine "Outbreak" extended by {retention:g}s')
        else:
            self.log.info(f'MID {copy.mid} rescanned: {decision.reason}; deletion from '
                          f'centralized quarantine "Outbreak" requested (rescanned)')
            self.copies.forget(copy.mid)
