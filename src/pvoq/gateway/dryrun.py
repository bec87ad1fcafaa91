"""Dry rescans: the manager asks this gateway to scan a held message, nothing kept.

A `rescan_request` (docs/cpq.md) arrives on the `cpq_listener` with the held
copy as its body. `DryRescan` runs it through the whole pipeline in force
(message filters, anti-virus, content filters, outbreak filters: today's
rules), with the envelope the message had (its sender and recipients, the
peer it came from, the policy of its first recipient), and answers with the
verdict (`cpq.rescan`). Nothing is spooled, routed, kept as an outbreak copy
or counted; a stage that cannot decide (the scanners down) gives a `451`
naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from pvoq.config.model import Config
from pvoq.cpq import replies as cpq_replies
from pvoq.cpq.rescan import verdict_lines, verdict_object
from pvoq.cpq.transfer import RescanRequest
from pvoq.gateway.processing import Processor, ScanEngines, envelope_of
from pvoq.maillog import MailLog
from pvoq.scan.verdict import ScanError
from pvoq.spool.store import Entry, Recipient

REASON_CHARS = 300  # of a failure's text in the reply


class DryRescan:
    """Scans a held message for the manager and builds the reply (see module doc)."""

    def __init__(self, *, config: Callable[[], Config], engines: ScanEngines,
                 processor: Processor, maillog: MailLog) -> None:
        self.config = config
        self.engines = engines
        self.processor = processor
        self.maillog = maillog

    async def __call__(self, request: RescanRequest, body: bytes, mid: int,
                       manager: str) -> str:
        origin = request.origin
        entry = Entry(mid=mid, sender=request.sender,
                      recipients=[Recipient(r.rid, r.address) for r in request.recipients],
                      received=0.0, size=len(body), peer=origin.peer or "")
        envelope = envelope_of(entry, self.config().listeners)
        what = f"dry rescan of MID {origin.mid} (manager MID {request.entry}) for {manager}"
        try:
            result = await self.engines.scanners.run(
                body, envelope=envelope, policy=self.processor.policy_name(entry))
        except ScanError as exc:
            reason = " ".join(str(exc).split()).encode("ascii", "backslashreplace").decode()
            reason = reason[:REASON_CHARS]
            self.maillog.warning(f"MID {mid} {what} failed: {reason}")
            self.maillog.info(f"Message finished MID {mid} aborted")
            return cpq_replies.RESCAN_FAILED.format(mid=origin.mid, reason=reason)
        verdict = verdict_object(
            action=str(result.action), reason=result.reason, unscannable=result.unscannable,
            verdicts=[asdict(v) for v in result.verdicts],
            stages=[{"stage": t.stage, "outcome": str(t.outcome), "hits": list(t.hits),
                     "misses": list(t.misses)} for t in result.trace])
        action = str(result.action).upper()
        reasons = ", ".join(f'"{v.quarantine}" ({v.reason})' for v in result.verdicts)
        self.maillog.info(f"MID {mid} {what}: {action}"
                          + (f" {reasons}" if reasons else "") + "; nothing kept")
        self.maillog.info(f"Message finished MID {mid} done")
        lines = [cpq_replies.RESCAN_VERDICT.format(mid=origin.mid, action=action)]
        lines[0] = lines[0].replace("250 ", "250-", 1)
        lines += [cpq_replies.RESCAN_VERDICT_LINE.more().format(line=line)
                  for line in verdict_lines(verdict)]
        lines.append(str(cpq_replies.RESCAN_DONE))
        return "\r\n".join(lines)
