"""The gateway's copies of outbreak-quarantined mail, their rescans, and the notices.

AsyncOS keeps a copy of every message it sends to the Outbreak quarantine
and rescans the copies whenever the outbreak rules change. This module owns:

- `OutbreakCopies`: `<data>/outbreak_copies/<MID>.eml` + `<MID>.json`
  (written by write-fsync-rename; the `.json` appearing is the commit);
- `decide()`: the pure decision for one copy against the current rules, a
  `RescanAction`: `release` (no rule at or above the quarantine threat
  level matches any more), `extend` (a rule still matches: keep it for the
  retention of that rule's category, from now), or `delete` (anti-virus now
  finds a virus: the outbreak turned out to be a known virus);
- `NoticeOutbox`: the durable outbox of what the manager must be told,
  `<data>/outbreak_notices/<id>.json`, one JSON object per decision: the
  `cpq.transfer.RescanNotice` that `notice()` builds; the gateway spools
  each for the manager (CPQ kind `outbreak_rescan`) and then drops it from here.

This module never talks to the network and never logs: the gateway does.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from pvoq.config.filterlang import BuiltinQuarantine
from pvoq.cpq.transfer import Kind, Origin, RescanAction, RescanNotice
from pvoq.fsutil import atomic_write, fsync_dir, remove_durably, remove_leftovers
from pvoq.scan.antivirus import AvEngine, AvVerdict
from pvoq.scan.message import ScanMessage
from pvoq.scan.outbreak import OutbreakCategory, RuleSet

# What the manager is to do with the quarantined original of a rescanned copy
# (`cpq.transfer.RescanAction`): release it (no rule at or above the threshold
# matches any more), extend it (a rule still matches: keep it for that rule's
# retention), or delete it (anti-virus now finds a virus).
RELEASE: Final = RescanAction.RELEASE
EXTEND: Final = RescanAction.EXTEND
DELETE: Final = RescanAction.DELETE
NOTICE_KIND: Final = Kind.OUTBREAK_RESCAN


@dataclass
class OutbreakCopy:
    """What the gateway remembers of one message it sent to the Outbreak quarantine."""

    mid: int
    transfer_id: str
    sender: str
    recipients: list[str]
    rule: str
    threat_level: int
    quarantined_at: float
    retention_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def expires_at(self) -> float:
        return self.quarantined_at + self.retention_s


@dataclass(frozen=True)
class Decision:
    mid: int
    action: RescanAction
    reason: str            # for mail_logs and the manager
    rules_version: str
    retention_s: float | None = None
    rule: str = ""


class OutbreakCopies:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.dir)
        self.orphans_removed = self._remove_orphans()

    def _remove_orphans(self) -> int:
        """Bodies whose entry was never written (`keep` cut between its two writes): the
        entry's appearance is a copy's commit, so such a body belongs to no copy."""
        removed = 0
        for item in os.scandir(self.dir):
            if item.name.endswith(".eml") and not (self.dir / (item.name[:-4] + ".json")).exists():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(item.path)
                removed += 1
        return removed

    def keep(self, copy: OutbreakCopy, body: bytes) -> None:
        body_path = self.dir / f"{copy.mid}.eml"
        atomic_write(body_path, body, sync_dir=False)
        try:
            atomic_write(self.dir / f"{copy.mid}.json", json.dumps(asdict(copy)).encode())
        except BaseException:
            with contextlib.suppress(OSError):
                body_path.unlink()  # no entry, no copy: its body must not stay behind
            raise

    def update(self, copy: OutbreakCopy) -> None:
        atomic_write(self.dir / f"{copy.mid}.json", json.dumps(asdict(copy)).encode())

    def all(self) -> list[OutbreakCopy]:
        copies = []
        for item in sorted(os.scandir(self.dir), key=lambda e: e.name):
            if item.name.endswith(".json"):
                copies.append(OutbreakCopy(**json.loads(Path(item.path).read_bytes())))
        return sorted(copies, key=lambda c: c.mid)

    def body(self, mid: int) -> bytes:
        return (self.dir / f"{mid}.eml").read_bytes()

    def forget(self, mid: int) -> bool:
        entry = self.dir / f"{mid}.json"
        if not entry.exists():
            return False
        remove_durably(entry, sync_dir=False)
        remove_durably(self.dir / f"{mid}.eml", sync_dir=False)
        fsync_dir(self.dir)
        return True


def decide(copy: OutbreakCopy, body: bytes, rules: RuleSet, *, threshold: int,
           retention_viral_s: float, retention_other_s: float,
           engine: AvEngine | None = None) -> Decision:
    """What the manager should do with the quarantined original of *copy*.

    Anti-virus errors propagate (ScanError): no decision is better than a wrong one.
    """
    msg = ScanMessage(body)
    if engine is not None:
        found = engine.scan(body)
        if found.verdict == AvVerdict.VIRAL:
            return Decision(copy.mid, DELETE, f"a/v verdict:VIRAL {' '.join(found.names)}",
                            rules.version)
    matches = [(r, what) for r, what in rules.matches(msg) if r.threat_level >= threshold]
    if not matches:
        was = f"VOF rule:{copy.rule}"
        return Decision(copy.mid, RELEASE, f"{was} no longer matches at threat level "
                        f">= {threshold} (rules version {rules.version or '-'})", rules.version)
    rule, what = max(matches, key=lambda m: m[0].threat_level)
    retention = (retention_viral_s if rule.category == OutbreakCategory.VIRAL_ATTACHMENTS
                 else retention_other_s)
    return Decision(copy.mid, EXTEND, f"VOF rule:{rule.id} threat level {rule.threat_level} "
                    f"still matches ({what})", rules.version, retention, rule.id)


def notice(decision: Decision, copy: OutbreakCopy, *, hostname: str, serial: str,
           now: Callable[[], float] = time.time) -> RescanNotice:
    """The message to the manager about one decision (CPQ kind `outbreak_rescan`).

    `origin` names the quarantined message as its CPQ quarantine transfer did
    (`origin.serial` + `origin.mid`; `quarantine_transfer_id` is that transfer's
    id). `action`: release the message from "Outbreak" (as "rescanned"),
    `extend` its scheduled exit to `rescanned_at + retention_s`, or `delete`
    it from "Outbreak". `transfer_id` makes the notice idempotent.
    """
    return RescanNotice(
        transfer_id=f"o-{serial}-{copy.mid}-{uuid.uuid4().hex[:12]}",
        origin=Origin(hostname=hostname, serial=serial, mid=copy.mid),
        quarantine_transfer_id=copy.transfer_id, quarantine=BuiltinQuarantine.OUTBREAK,
        action=decision.action, reason=decision.reason, rescanned_at=now(),
        retention_s=decision.retention_s, rules_version=decision.rules_version)


class NoticeOutbox:
    """Notices for the manager, durable until something delivers them."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        remove_leftovers(self.dir)

    def put(self, notice: RescanNotice) -> Path:
        path = self.dir / f"{notice.transfer_id}.json"
        atomic_write(path, json.dumps(notice.to_json(), sort_keys=True, indent=1).encode())
        return path

    def pending(self) -> list[RescanNotice]:
        found = [RescanNotice.from_json(json.loads(p.read_bytes()))
                 for p in self.dir.glob("*.json")]
        return sorted(found, key=lambda n: (n.rescanned_at, n.transfer_id))

    def done(self, transfer_id: str) -> None:
        remove_durably(self.dir / f"{transfer_id}.json")
