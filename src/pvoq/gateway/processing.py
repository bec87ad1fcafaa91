"""The gateway's processing of one message: scan it, then hand the result to the router.

`Processor.dispose` is the work queue's hook (`gateway.workqueue`): it
groups the recipients by per-recipient policy, runs the pipeline in the
scanner processes (`scan.workers`), adds the verdicts a split part carries
from the whole message's message filters, notes a released outbreak copy,
and routes the result (`gateway.router`). `ScanEngines` holds the pipeline
and the scanner processes in force: both are replaced on a reload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pvoq.config.hat import match_hat
from pvoq.config.model import Config, Listener, ScanSettings
from pvoq.gateway.router import Router
from pvoq.maillog import MailLog
from pvoq.scan.keeper import OutbreakKeeper
from pvoq.scan.message import Envelope
from pvoq.scan.pipeline import MESSAGE_FILTERS, Pipeline, unscannable_scan
from pvoq.scan.verdict import BOUNCE, DROP, QUARANTINE, Verdict
from pvoq.scan.workers import ScanWorkers
from pvoq.spool.store import Entry, Recipient

DEFAULT_POLICY = "DEFAULT"


class ScanEngines:
    """The pipeline (`pipeline show`, rescans of outbreak copies) and the scanner processes
    (the scans of incoming mail) in force; `replace` swaps both for a new configuration."""

    def __init__(self, settings: ScanSettings) -> None:
        self.pipeline = Pipeline(settings)
        self.scanners = ScanWorkers(settings, processes=settings.processes)

    def replace(self, settings: ScanSettings) -> tuple[Pipeline, ScanWorkers]:
        """Put new engines in force; returns the old ones, for the caller to close."""
        old = self.pipeline, self.scanners
        self.pipeline = Pipeline(settings)
        self.scanners = ScanWorkers(settings, processes=settings.processes)
        return old


def envelope_of(entry: Entry, listeners: Sequence[Listener]) -> Envelope:
    """The envelope the filters see; the sender group is the one the listener's HAT
    matched when the message arrived (older entries: the first public listener's)."""
    group = entry.meta.get("sender_group")
    if group is not None:
        return Envelope(entry.sender, tuple(r.address for r in entry.recipients),
                        entry.peer, str(group))
    group = ""
    public = [x for x in listeners if not x.is_cpq]
    if public and entry.peer:
        try:
            group = match_hat(public[0].hat, entry.peer).group
        except ValueError:
            group = ""
    return Envelope(entry.sender, tuple(r.address for r in entry.recipients), entry.peer,
                    group)


class Processor:
    """Scans an incoming message and routes it (the work queue's `dispose`).

    *config* gives the configuration in force; *engines* the scanner processes;
    *router* acts on the results; *outbreak* learns of released copies.
    """

    def __init__(self, *, config: Callable[[], Config], engines: ScanEngines, router: Router,
                 outbreak: OutbreakKeeper, maillog: MailLog) -> None:
        self.config = config
        self.engines = engines
        self.router = router
        self.outbreak = outbreak
        self.maillog = maillog

    async def dispose(self, entry: Entry, body: bytes) -> list[Entry]:
        """Scan an incoming entry (in a scanner process) and route it durably.

        Recipients under different per-recipient policies split the message:
        message filters run on the whole message, then each policy's part gets a
        new MID and runs the later stages with that policy's settings; the parts
        are returned, for the work queue. A ScanError (a stage erred or timed
        out) propagates: the entry stays INCOMING in the spool, untouched, and is
        scanned again later.
        """
        released = entry.meta.get("released") or entry.meta.get("local_release")
        resume_after = released["resume_after"] if released else entry.meta.get("resume_after")
        envelope = envelope_of(entry, self.config().listeners)
        if not released and "policy" not in entry.meta:
            groups = self.policy_groups(entry)
            if len(groups) > 1:
                first = await self.engines.scanners.run(body, envelope=envelope,
                                                        stop_after=MESSAGE_FILTERS)
                if first.action in (DROP, BOUNCE):
                    await self.router.route(entry, first)
                    return []
                return await self.router.split(entry, groups, first, body)
            self.maillog.info(f"MID {entry.mid} matched all recipients for per-recipient "
                              f"policy {next(iter(groups))} in the inbound table")
        result = await self.engines.scanners.run(
            body, envelope=envelope, policy=self.policy_name(entry), resume_after=resume_after,
            skip=tuple(entry.meta.get("skip", ())))
        prior = [Verdict(**v) for v in entry.meta.get("prior_verdicts", [])]
        if prior and result.action not in (DROP, BOUNCE):
            result.verdicts[:0] = prior
            result.action = QUARANTINE
        if released:
            self.outbreak.released(int(released["origin_mid"]), entry.mid)
        await self.router.route(entry, result)
        return []

    async def unscannable(self, entry: Entry, body: bytes, reason: str) -> None:
        """Route *entry* by its policy's unscannable action, unscanned (the work queue's
        hook for a message that failed too often; *reason* says why)."""
        action = self.config().scan.antivirus.unscannable_action
        await self.router.route(entry, unscannable_scan(action, reason))

    # -- per-recipient mail policies -------------------------------------------------
    def policy_groups(self, entry: Entry) -> dict[str, list[Recipient]]:
        """The recipients of *entry* by the name of their per-recipient policy."""
        groups: dict[str, list[Recipient]] = {}
        scan = self.config().scan
        for r in entry.recipients:
            policy = scan.policy_for(r.address)
            groups.setdefault(policy.name if policy else DEFAULT_POLICY, []).append(r)
        return groups

    def policy_name(self, entry: Entry) -> str | None:
        """The per-recipient policy whose settings scan *entry* (None: the default policy).

        A split part names its policy; a message that was not split has one
        policy for all its recipients, the first recipient's.
        """
        name = entry.meta.get("policy")
        if name is None:
            policy = self.config().scan.policy_for(entry.recipients[0].address)
            return policy.name if policy else None
        return str(name)
