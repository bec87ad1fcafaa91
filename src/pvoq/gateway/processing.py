"""The gateway's work queue: scan each incoming message and route it durably.

A mixin of `Gateway`: messages accepted by a listener (or recovered from the
spool) wait in the work queue; batches of them are claimed (poison-message
protection, `spool.claims`), scanned off the event loop, and routed: clean
recipients to their domain's delivery queue, caught messages to
`the.cpq.host`, dropped or bounced ones finished (with a DSN for a bounce).
Every routing change reaches the disk before the message is queued.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from pvoq.config.hat import match_hat
from pvoq.config.model import THE_CPQ_HOST
from pvoq.cpq.metadata import KIND_QUARANTINE, VERSION
from pvoq.delivery.dsn import build_dsn, status_of
from pvoq.gateway.handlers import _domain
from pvoq.scan.message import Envelope
from pvoq.scan.pipeline import ANTIVIRUS, MESSAGE_FILTERS, OUTBREAK_FILTERS, Pipeline, ScanError
from pvoq.scan.verdict import BOUNCE, DROP, QUARANTINE, ScanResult, StageTrace, Verdict
from pvoq.scan.workers import ScannerLost, ScanWorkers
from pvoq.spool.claims import MAX_ATTEMPTS, Claims
from pvoq.spool.store import BOUNCED, DELETED, QUEUED, Entry, Recipient

if TYPE_CHECKING:
    from pvoq.appliance import Appliance as _Base
    from pvoq.scan.keeper import OutbreakKeeper
else:
    _Base = object

DEFAULT_POLICY = "DEFAULT"
BATCH = 16  # messages taken from the work queue together (one claim, one round trip)
IN_FLIGHT = 4  # batches under way at once
BODY_CACHE = 512  # bodies of queued messages kept in memory (the spool has them anyway)


class Processing(_Base):
    """The pipeline side of `Gateway` (which sets these attributes)."""

    pipeline: Pipeline
    scanners: ScanWorkers
    outbreak: OutbreakKeeper
    _work: asyncio.Queue[Entry | None]  # None: a wake-up for suspects
    _scanner_losses: dict[int, int]
    _suspects: list[Entry]
    _bodies: dict[int, bytes]
    _in_work: int
    claims: Claims
    workqueue_open: asyncio.Event

    # -- bounces ----------------------------------------------------------------
    def _bounce(self, entry: Entry, rcpts: list[Recipient], reason: str,
                dsn_mid: int | None = None) -> None:
        """Queue a DSN (RFC 3464) to the envelope sender; never for a DSN (null sender).

        With *dsn_mid* (planned before a crash could repeat this), a DSN already
        spooled under that MID is not made again.
        """
        if not entry.sender:
            self.maillog.info(f"MID {entry.mid} bounce not sent: null sender")
            return
        if dsn_mid is not None and dsn_mid in self.spool:
            return
        body = build_dsn(reporting_host=self.config.hostname, sender=entry.sender,
                         original_mid=entry.mid, received=entry.received,
                         failures=[(r.address, status_of(r.last_error or reason, "5.0.0"),
                                    r.last_error or reason) for r in rcpts],
                         original=self.spool.read_body(entry.mid))
        dsn = Entry(mid=dsn_mid if dsn_mid is not None else self.ids.next("mid"), sender="",
                    recipients=[Recipient(0, entry.sender, host=_domain(entry.sender))],
                    received=time.time(), size=len(body), state=QUEUED,
                    meta={"subject": "Delivery Status Notification (Failure)",
                          "dsn_for": entry.mid})
        self.spool.put(dsn, body)
        self.maillog.info(f"MID {dsn.mid} DSN for MID {entry.mid} to <{entry.sender}> "
                          f"queued for delivery")
        self.queues.add(dsn)

    # -- the pipeline ----------------------------------------------------------
    def submit(self, entry: Entry, body: bytes | None = None) -> None:
        """Queue *entry* for scanning; *body*, when given, saves reading it back from disk."""
        if body is not None and len(self._bodies) < BODY_CACHE:
            self._bodies[entry.mid] = body
        self._work.put_nowait(entry)

    async def _process_forever(self) -> None:
        """Take batches from the work queue: claim them, scan them side by side, route them.

        Up to `IN_FLIGHT` batches are under way at once, so that one batch's
        scans overlap another's spool commits. Suspects of a crash (claimed
        when the process last died) go one at a time, alone, each claim
        raising its count; see `spool.claims`.
        """
        slots = asyncio.Semaphore(IN_FLIGHT)
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self.workqueue_open.wait()
                if self._suspects:
                    if running:
                        await asyncio.wait(running)  # a suspect is processed alone
                    batch = [self._suspects.pop(0)]
                    self._in_work += 1
                    await self._process_batch(batch)
                    continue
                first = await self._work.get()
                if first is None:
                    continue  # a wake-up: suspects are waiting
                batch = [first]
                while len(batch) < BATCH and not self._work.empty():
                    item = self._work.get_nowait()
                    if item is not None:
                        batch.append(item)
                self._in_work += len(batch)
                await self.workqueue_open.wait()  # paused while this batch was being taken
                await slots.acquire()
                task = asyncio.ensure_future(self._process_batch(batch))
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _: slots.release())
        finally:
            for task in running:
                task.cancel()

    async def _process_batch(self, batch: list[Entry]) -> None:
        mids = [e.mid for e in batch]
        try:
            await self.claims.claim_async(mids)
        except OSError as exc:  # e.g. a full disk: keep the batch, try again shortly
            self.maillog.critical(f"Work queue: cannot record claims ({exc}); "
                                  f"{len(batch)} messages wait in the spool")
            self._in_work -= len(batch)
            for entry in batch:
                self.submit(entry)
            await asyncio.sleep(self.config.scan.retry_seconds)
            return
        try:
            await asyncio.gather(*(self._process_one(e) for e in batch))
        finally:
            self._in_work -= len(batch)
            self.claims.done(mids)

    async def _process_one(self, entry: Entry) -> None:
        try:
            await self.process(entry)
            self._scanner_losses.pop(entry.mid, None)
        except ScannerLost as exc:
            self._scanner_lost(entry, exc)
        except ScanError as exc:
            # Fail closed: the entry stays INCOMING in the spool and is scanned again.
            retry_s = self.config.scan.retry_seconds
            self.maillog.warning(
                f"MID {entry.mid} temporary failure in {exc.stage or 'the pipeline'}: "
                f"{exc}; message kept in the spool, retry in {retry_s:g}s")
            asyncio.get_running_loop().call_later(retry_s, self.submit, entry)
        except Exception as exc:  # keep the message; never lose it to a bug
            retry_s = max(self.config.scan.retry_seconds, 60.0)
            self.maillog.critical(f"MID {entry.mid} application fault in the pipeline: "
                                  f"{type(exc).__name__}: {exc}; message kept in the spool, "
                                  f"retry in {retry_s:g}s")
            asyncio.get_running_loop().call_later(retry_s, self.submit, entry)

    def _scanner_lost(self, entry: Entry, exc: ScannerLost) -> None:
        """A scanner process died with *entry* in its batch: scan it again alone.

        Every message of that batch is a suspect: each is scanned again on its
        own (as after a crash of the gateway), so an innocent neighbour passes,
        and a message that has now stopped a scanner `MAX_ATTEMPTS` times moves
        to `spool/bad/` instead of stopping the next one.
        """
        mid = entry.mid
        lost = self._scanner_losses[mid] = self._scanner_losses.get(mid, 0) + 1
        if lost >= MAX_ATTEMPTS:
            self._scanner_losses.pop(mid, None)
            bad = self.spool.move_to_bad(mid)
            self.maillog.critical(f"MID {mid} moved to {bad}: scanning it stopped a scanner "
                                  f"process {lost} times; kept there for an operator")
            return
        self.maillog.warning(f"MID {mid} temporary failure in the pipeline: {exc}; message "
                             f"kept in the spool, scanned again alone")
        self._suspects.append(entry)
        self._work.put_nowait(None)  # wakes the work queue if it waits for mail

    def _envelope(self, entry: Entry) -> Envelope:
        """The envelope the filters see; the sender group is the one the listener's HAT
        matched when the message arrived (older entries: the first public listener's)."""
        group = entry.meta.get("sender_group")
        if group is not None:
            return Envelope(entry.sender, tuple(r.address for r in entry.recipients),
                            entry.peer, str(group))
        group = ""
        public = [x for x in self.config.listeners if not x.is_cpq]
        if public and entry.peer:
            try:
                group = match_hat(public[0].hat, entry.peer).group
            except ValueError:
                group = ""
        return Envelope(entry.sender, tuple(r.address for r in entry.recipients), entry.peer,
                        group)

    async def process(self, entry: Entry) -> None:
        """Scan an incoming entry (in a worker thread) and route it durably.

        Recipients under different per-recipient policies split the message:
        message filters run on the whole message, then each policy's part gets a
        new MID and runs the later stages with that policy's settings. A
        ScanError (a stage erred or timed out) propagates: the entry stays
        INCOMING in the spool, untouched, and is scanned again later.
        """
        released = entry.meta.get("released")
        resume_after = released["resume_after"] if released else entry.meta.get("resume_after")
        body = self._bodies.pop(entry.mid, None) or self.spool.read_body(entry.mid)
        envelope = self._envelope(entry)
        if not released and "policy" not in entry.meta:
            groups = self._policy_groups(entry)
            if len(groups) > 1:
                first = await self.scanners.run(body, envelope=envelope,
                                                stop_after=MESSAGE_FILTERS)
                if first.action in (DROP, BOUNCE):
                    await self.route(entry, first)
                else:
                    await self._split(entry, groups, first, body)
                return
            self.maillog.info(f"MID {entry.mid} matched all recipients for per-recipient "
                              f"policy {next(iter(groups))} in the inbound table")
        result = await self.scanners.run(
            body, envelope=envelope, policy=self._policy_name(entry), resume_after=resume_after,
            skip=tuple(entry.meta.get("skip", ())))
        prior = [Verdict(**v) for v in entry.meta.get("prior_verdicts", [])]
        if prior and result.action not in (DROP, BOUNCE):
            result.verdicts[:0] = prior
            result.action = QUARANTINE
        if released:
            self.outbreak.released(int(released["origin_mid"]), entry.mid)
        await self.route(entry, result)

    # -- per-recipient mail policies -------------------------------------------------
    def _policy_groups(self, entry: Entry) -> dict[str, list[Recipient]]:
        groups: dict[str, list[Recipient]] = {}
        for r in entry.recipients:
            policy = self.config.scan.policy_for(r.address)
            groups.setdefault(policy.name if policy else DEFAULT_POLICY, []).append(r)
        return groups

    def _policy_name(self, entry: Entry) -> str | None:
        """The per-recipient policy whose settings scan *entry* (None: the default policy).

        A split part names its policy; a message that was not split has one
        policy for all its recipients, the first recipient's.
        """
        name = entry.meta.get("policy")
        if name is None:
            policy = self.config.scan.policy_for(entry.recipients[0].address)
            return policy.name if policy else None
        return str(name)

    async def _split(self, entry: Entry, groups: dict[str, list[Recipient]], first: ScanResult,
               body: bytes) -> None:
        """One new MID per policy, each spooled durably before the original goes."""
        for trace in first.trace:
            self._log_trace(entry.mid, trace)
        part_body = first.body if first.body is not None else body
        for dup in first.duplicates:
            await self._duplicate(entry, dup, part_body)
        skip = list(first.skip)  # skip-filters() on the whole message holds for every part
        plan = await self._plan(entry, "split", list(groups))
        parts: list[tuple[str, Entry]] = []
        fresh: list[Entry] = []
        for name, rcpts in groups.items():
            made = self.spool.get(plan[name])
            if made is not None:
                # Written before a crash (and queued again by the recovery): keep it.
                parts.append((name, made))
                continue
            part = Entry(
                mid=plan[name], sender=entry.sender,
                recipients=[Recipient(r.rid, r.address) for r in rcpts],
                received=entry.received, size=len(part_body), icid=entry.icid, peer=entry.peer,
                meta={"subject": entry.meta.get("subject", ""), "policy": name,
                      "split_from": entry.mid, "resume_after": MESSAGE_FILTERS,
                      "prior_verdicts": [asdict(v) for v in first.verdicts], "skip": skip})
            await self.spool.put_async(part, part_body)
            parts.append((name, part))
            fresh.append(part)
        for name, part in parts:
            rids = ", ".join(str(r.rid) for r in part.recipients)
            self.maillog.info(f"MID {entry.mid} rewritten to MID {part.mid} by per-recipient "
                              f"policy {name} (RID [{rids}])")
        await self.spool.remove_async(entry.mid)
        for part in fresh:
            self.submit(part)

    async def route(self, entry: Entry, result: ScanResult) -> None:
        """Act on a scan result; every change is on disk before the entry is queued."""
        log = self.maillog
        mid = entry.mid
        for trace in result.trace:
            self._log_trace(mid, trace)
        if result.action in (DROP, BOUNCE):
            await self._finish_unqueued(entry, result)
            return
        body = result.body  # the message as the pipeline rewrote it, or None
        for dup in result.duplicates:
            await self._duplicate(entry, dup, body)
        if body is not None:
            entry.size = len(body)
            log.info(f"MID {mid} rewritten by the pipeline ({entry.size} bytes)")
        if result.verdicts:
            for v in result.verdicts:
                log.info(f'MID {mid} quarantined to "{v.quarantine}" ({v.reason})')
                log.info(f'MID {mid} enqueued for transfer to centralized quarantine '
                         f'"{v.quarantine}" ({v.reason})')
            for r in entry.recipients:
                r.host = THE_CPQ_HOST
            entry.meta["cpq"] = self._quarantine_meta(entry, result.verdicts, result.trace)
            self.outbreak.keep(mid=entry.mid, transfer_id=entry.meta["cpq"]["transfer_id"],
                               sender=entry.sender,
                               recipients=[r.address for r in entry.recipients],
                               verdicts=result.verdicts,
                               body=body if body is not None else self.spool.read_body(entry.mid))
        else:
            for r in entry.recipients:
                r.host = _domain(r.address)
            log.info(f"MID {mid} queued for delivery")
        entry.state = QUEUED
        if body is None:
            await self.spool.update_async(entry)
        else:
            # The rewritten message and its routing in one record: a crash before it
            # leaves the original, which is scanned again, never the rewrite unrouted.
            await self.spool.put_async(entry, body)
        self.queues.add(entry)

    def _log_trace(self, mid: int, trace: StageTrace) -> None:
        if trace.stage == ANTIVIRUS and trace.outcome != "skipped":
            hit = trace.hits[0] if trace.hits else ""
            if "VIRAL" in hit:
                self.maillog.info(f"MID {mid} antivirus positive '{hit.split()[-1]}'")
            elif hit:
                self.maillog.info(f"MID {mid} antivirus {hit.split(':', 1)[1].split()[0].lower()}")
            elif trace.misses and "disabled" not in trace.misses[0]:
                self.maillog.info(f"MID {mid} antivirus negative")
        elif trace.stage == OUTBREAK_FILTERS and trace.outcome != "skipped":
            verdict = "positive" if trace.hits else "negative"
            self.maillog.info(f"MID {mid} Outbreak Filters: verdict {verdict}"
                              + (f" ({', '.join(trace.hits)})" if trace.hits else ""))
        elif trace.hits:
            self.maillog.info(f"MID {mid} {trace.stage.replace('_', ' ')} matched: "
                              f"{', '.join(trace.hits)}")

    async def _finish_unqueued(self, entry: Entry, result: ScanResult) -> None:
        """Drop or bounce: every recipient reaches a final state and the entry goes.

        A bounce's DSN is spooled (by `_bounce`) before the original is removed.
        """
        if result.action == DROP:
            self.maillog.info(f"MID {entry.mid} dropped by {result.reason}")
        for r in entry.recipients:
            r.status = DELETED if result.action == DROP else BOUNCED
            r.last_error = f"5.7.1 message bounced by {result.reason}"
            if result.action == BOUNCE:
                self.maillog.info(f"Bounced: MID {entry.mid} to RID [{r.rid}] - {r.last_error}")
        if result.action == BOUNCE:
            planned = (await self._plan(entry, "dsn", ["dsn"]))["dsn"] if entry.sender else None
            self._bounce(entry, entry.recipients, f"5.7.1 message bounced by {result.reason}",
                         dsn_mid=planned)
        await self.spool.remove_async(entry.mid)
        self.maillog.info(f"Message finished MID {entry.mid} done")

    async def _plan(self, entry: Entry, key: str, names: list[str]) -> dict[str, int]:
        """MIDs for the messages *entry* is about to give rise to, chosen once.

        They are recorded in the entry (durably) before any of those messages is
        written, so that processing the entry again after a crash rebuilds the
        same messages under the same MIDs instead of making more of them.
        """
        plans = entry.meta.setdefault("plans", {})
        plan = plans.get(key)
        if plan is None or set(plan) != set(names):
            plan = plans[key] = {name: self.ids.next("mid") for name in names}
            await self.spool.update_async(entry)
        return {name: int(mid) for name, mid in plan.items()}

    async def _duplicate(self, entry: Entry, verdict: Verdict, body: bytes | None) -> None:
        """A copy of the message, as its own MID, to a quarantine (duplicate-quarantine)."""
        key = f"duplicate:{verdict.quarantine}:{verdict.reason}"
        new_mid = (await self._plan(entry, key, ["copy"]))["copy"]
        if new_mid in self.spool:
            return  # made before a crash; the recovery queued it
        copy = Entry(mid=new_mid, sender=entry.sender,
                     recipients=[Recipient(r.rid, r.address, host=THE_CPQ_HOST)
                                 for r in entry.recipients],
                     received=entry.received, size=entry.size if body is None else len(body),
                     icid=entry.icid, peer=entry.peer, state=QUEUED,
                     meta={"subject": entry.meta.get("subject", ""), "duplicate_of": entry.mid})
        copy.meta["cpq"] = self._quarantine_meta(copy, [verdict])
        await self.spool.put_async(
            copy, body if body is not None else self.spool.read_body(entry.mid))
        self.maillog.info(f"MID {new_mid} was generated based on MID {entry.mid} by "
                          f"duplicate-quarantine ({verdict.reason})")
        self.maillog.info(f'MID {new_mid} enqueued for transfer to centralized quarantine '
                          f'"{verdict.quarantine}" ({verdict.reason})')
        self.queues.add(copy)

    def _quarantine_meta(self, entry: Entry, verdicts: list[Verdict],
                         trace: list[StageTrace] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "v": VERSION, "kind": KIND_QUARANTINE,
            "transfer_id": f"q-{self.config.serial_number}-{entry.mid}-{uuid.uuid4().hex[:12]}",
            "origin": {"hostname": self.config.hostname, "serial": self.config.serial_number,
                       "mid": entry.mid, "icid": entry.icid, "peer": entry.peer},
            "sender": entry.sender,
            "recipients": [{"rid": r.rid, "address": r.address} for r in entry.recipients],
            "quarantines": [v.metadata() for v in verdicts],
            "received": entry.received, "size": entry.size,
        }
        if trace:  # the why: every stage's hits and misses (the manager may show it)
            meta["scan_trace"] = [{"stage": t.stage, "outcome": t.outcome, "hits": list(t.hits),
                                   "misses": list(t.misses)} for t in trace]
        return meta
