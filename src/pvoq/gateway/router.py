"""The gateway's router: act on a scan result, durably.

Owns what happens to a message once the pipeline has decided: clean
recipients go to their domain's delivery queue, caught messages to
`the.cpq.host` with the quarantine metadata the manager reads (CPQ), or, in
local mode, into the gateway's own quarantines (`gateway.local`); a
message whose recipients fall under different per-recipient policies is
split into one new message per policy; duplicate-quarantine copies are made
as their own messages; a dropped or bounced message is finished (with a DSN,
RFC 3464, for a bounce, and for the delivery queues' bounces too). The
`mail_logs` lines of a scan (its trace) are written here.

Every change reaches the spool before a message is queued, and the MIDs of
the messages one gives rise to are chosen once and recorded in it
(`plan`), so that routing it again after a crash makes the same messages,
not more of them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from functools import partial

from pvoq import metrics
from pvoq.config.model import THE_CPQ_HOST, Config
from pvoq.cpq.transfer import Origin, QuarantineTransfer, TraceStep, TransferRecipient
from pvoq.delivery.dsn import build_dsn, status_of
from pvoq.delivery.queue import DeliveryQueues
from pvoq.gateway.local import LocalQuarantines, centralized, local_transfer_id
from pvoq.maillog import IdAllocator, MailLog
from pvoq.scan.keeper import OutbreakKeeper
from pvoq.scan.pipeline import ANTIVIRUS, MESSAGE_FILTERS, OUTBREAK_FILTERS
from pvoq.scan.verdict import BOUNCE, DROP, SKIPPED, ScanResult, StageTrace, Verdict
from pvoq.spool.store import BOUNCED, DELETED, QUEUED, Entry, Recipient, Spool


def domain_of(address: str) -> str:
    """The delivery queue (host) of *address*: its domain, lower-cased."""
    return address.rpartition("@")[2].lower() or "localhost"


def quarantine_transfer_id(serial: str, mid: int) -> str:
    """A new transfer id for message *mid* of the gateway of *serial*, caught for the
    managers' quarantines: a gateway's ids sort in MID order while its MIDs keep their
    number of digits (the manager's unique index grows at its end), and the random tail
    keeps each routing's unique."""
    return f"q-{serial}-{mid}-{uuid.uuid4().hex[:12]}"


class Router:
    """Routes scanned messages: delivery queues, `the.cpq.host`, splits, copies, bounces.

    *config* gives the configuration in force (it changes on a reload);
    *queues* takes every message once it is routed and on disk; *outbreak*
    keeps a copy of each message caught, for the rescans; *local* holds what
    is caught while the gateway is in local mode (`gateway.local.centralized`
    says which mode is in force, read once per message; without *local* every
    caught message goes to `the.cpq.host`).
    """

    def __init__(self, *, config: Callable[[], Config], spool: Spool, maillog: MailLog,
                 ids: IdAllocator, queues: DeliveryQueues, outbreak: OutbreakKeeper,
                 local: LocalQuarantines | None = None) -> None:
        self.config = config
        self.spool = spool
        self.maillog = maillog
        self.ids = ids
        self.queues = queues
        self.outbreak = outbreak
        self.local = local

    def central(self) -> bool:
        """The mode in force: True when caught mail goes to the manager (centralized)."""
        return self.local is None or centralized(self.config())

    async def route(self, entry: Entry, result: ScanResult) -> None:
        """Act on a scan result; every change is on disk before the entry is queued.

        Caught mail goes one way as a whole, by the mode in force when routing
        begins: to `the.cpq.host`, or (local mode) into the local quarantines,
        stored durably before the spool entry is removed.
        """
        log = self.maillog
        mid = entry.mid
        central = self.central()
        if result.unscannable:
            log.info(f"MID {mid} unscannable: {result.unscannable}")
        for trace in result.trace:
            self._log_trace(mid, trace)
        metrics.verdict({DROP: "dropped", BOUNCE: "bounced"}.get(result.action, "quarantined" if
                        result.verdicts else "clean"), [v.quarantine for v in result.verdicts])
        if result.action in (DROP, BOUNCE):
            await self._finish_unqueued(entry, result)
            return
        body = result.body  # the message as the pipeline rewrote it, or None
        for dup in result.duplicates:
            await self.duplicate(entry, dup, body, central=central)
        if body is not None:
            entry.size = len(body)
            log.info(f"MID {mid} rewritten by the pipeline ({entry.size} bytes)")
        if result.verdicts:
            for v in result.verdicts:
                log.info(f'MID {mid} quarantined to "{v.quarantine}" ({v.reason})')
                if central:
                    log.info(f'MID {mid} enqueued for transfer to centralized quarantine '
                             f'"{v.quarantine}" ({v.reason})')
            transfer = self.quarantine_transfer(
                entry, result.verdicts, result.trace,
                transfer_id=None if central else local_transfer_id(
                    self.config().serial_number, entry.mid))
            self.outbreak.keep(mid=entry.mid, transfer_id=transfer.transfer_id,
                               sender=entry.sender,
                               recipients=[r.address for r in entry.recipients],
                               verdicts=result.verdicts,
                               body=body if body is not None
                               else partial(self.spool.read_body, entry.mid))  # if kept
            if not central:
                assert self.local is not None
                await self.local.hold(entry, transfer, body if body is not None
                                      else self.spool.read_body(entry.mid))
                return
            for r in entry.recipients:
                r.host = THE_CPQ_HOST
            entry.meta["cpq"] = transfer.to_json()
        else:
            for r in entry.recipients:
                r.host = domain_of(r.address)
            log.info(f"MID {mid} queued for delivery")
        entry.state = QUEUED
        if body is None:
            await self.spool.update_async(entry)
        else:
            # The rewritten message and its routing in one record: a crash before it
            # leaves the original, which is scanned again, never the rewrite unrouted.
            await self.spool.put_async(entry, body)
        self.queues.add(entry)

    async def split(self, entry: Entry, groups: dict[str, list[Recipient]], first: ScanResult,
                    body: bytes) -> list[Entry]:
        """One new MID per policy, each spooled durably before the original goes.

        *first* is the message filters' result on the whole message; each part
        runs the later stages with its policy's settings. Returns the parts
        written now, to be scanned (those written before a crash were queued
        again by the recovery).
        """
        for trace in first.trace:
            self._log_trace(entry.mid, trace)
        part_body = first.body if first.body is not None else body
        for dup in first.duplicates:
            await self.duplicate(entry, dup, part_body)
        skip = list(first.skip)  # skip-filters() on the whole message holds for every part
        plan = await self.plan(entry, "split", list(groups))
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
        return fresh

    async def duplicate(self, entry: Entry, verdict: Verdict, body: bytes | None, *,
                        central: bool = True) -> None:
        """A copy of the message, as its own MID, to a quarantine (duplicate-quarantine):
        to `the.cpq.host`, or (not *central*) into the local quarantines."""
        key = f"duplicate:{verdict.quarantine}:{verdict.reason}"
        new_mid = (await self.plan(entry, key, ["copy"]))["copy"]
        if not central:
            assert self.local is not None
            local = Entry(mid=new_mid, sender=entry.sender,
                          recipients=[Recipient(r.rid, r.address) for r in entry.recipients],
                          received=entry.received,
                          size=entry.size if body is None else len(body),
                          icid=entry.icid, peer=entry.peer,
                          meta={"subject": entry.meta.get("subject", ""),
                                "duplicate_of": entry.mid})
            transfer = self.quarantine_transfer(
                local, [verdict],
                transfer_id=local_transfer_id(self.config().serial_number, new_mid))
            self.maillog.info(f"MID {new_mid} was generated based on MID {entry.mid} by "
                              f"duplicate-quarantine ({verdict.reason})")
            self.maillog.info(f'MID {new_mid} quarantined to "{verdict.quarantine}" '
                              f'({verdict.reason})')
            await self.local.hold(local, transfer, body if body is not None
                                  else self.spool.read_body(entry.mid))
            return
        if new_mid in self.spool:
            return  # made before a crash; the recovery queued it
        copy = Entry(mid=new_mid, sender=entry.sender,
                     recipients=[Recipient(r.rid, r.address, host=THE_CPQ_HOST)
                                 for r in entry.recipients],
                     received=entry.received, size=entry.size if body is None else len(body),
                     icid=entry.icid, peer=entry.peer, state=QUEUED,
                     meta={"subject": entry.meta.get("subject", ""), "duplicate_of": entry.mid})
        copy.meta["cpq"] = self.quarantine_transfer(copy, [verdict]).to_json()
        await self.spool.put_async(
            copy, body if body is not None else self.spool.read_body(entry.mid))
        self.maillog.info(f"MID {new_mid} was generated based on MID {entry.mid} by "
                          f"duplicate-quarantine ({verdict.reason})")
        self.maillog.info(f'MID {new_mid} enqueued for transfer to centralized quarantine '
                          f'"{verdict.quarantine}" ({verdict.reason})')
        self.queues.add(copy)

    def bounce(self, entry: Entry, rcpts: list[Recipient], reason: str,
               dsn_mid: int | None = None) -> None:
        """Queue a DSN (RFC 3464) to the envelope sender; never for a DSN (null sender).

        The delivery queues' bounce hook too. With *dsn_mid* (planned before a
        crash could repeat this), a DSN already spooled under that MID is not
        made again.
        """
        if not entry.sender:
            self.maillog.info(f"MID {entry.mid} bounce not sent: null sender")
            return
        if dsn_mid is not None and dsn_mid in self.spool:
            return
        body = build_dsn(reporting_host=self.config().hostname, sender=entry.sender,
                         original_mid=entry.mid, received=entry.received,
                         failures=[(r.address, status_of(r.last_error or reason, "5.0.0"),
                                    r.last_error or reason) for r in rcpts],
                         original=self.spool.read_body(entry.mid))
        dsn = Entry(mid=dsn_mid if dsn_mid is not None else self.ids.next("mid"), sender="",
                    recipients=[Recipient(0, entry.sender, host=domain_of(entry.sender))],
                    received=time.time(), size=len(body), state=QUEUED,
                    meta={"subject": "Delivery Status Notification (Failure)",
                          "dsn_for": entry.mid})
        self.spool.put(dsn, body)
        self.maillog.info(f"MID {dsn.mid} DSN for MID {entry.mid} to <{entry.sender}> "
                          f"queued for delivery")
        self.queues.add(dsn)

    async def plan(self, entry: Entry, key: str, names: list[str]) -> dict[str, int]:
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

    def quarantine_transfer(self, entry: Entry, verdicts: list[Verdict],
                            trace: list[StageTrace] | None = None, *,
                            transfer_id: str | None = None) -> QuarantineTransfer:
        """The CPQ quarantine transfer of *entry* caught by *verdicts* (its `meta["cpq"]`);
        a new transfer id unless *transfer_id* is given (a locally held message's)."""
        config = self.config()
        return QuarantineTransfer(
            transfer_id=transfer_id or quarantine_transfer_id(config.serial_number, entry.mid),
            origin=Origin(hostname=config.hostname, serial=config.serial_number,
                          mid=entry.mid, icid=entry.icid, peer=entry.peer),
            sender=entry.sender,
            recipients=tuple(TransferRecipient(r.rid, r.address) for r in entry.recipients),
            quarantines=tuple(v.ref() for v in verdicts),
            received=entry.received, size=entry.size,
            # the why: every stage's hits and misses (the manager may show it)
            scan_trace=tuple(TraceStep(t.stage, t.outcome, t.hits, t.misses)
                             for t in trace) if trace else None)

    # -- inside -------------------------------------------------------------------
    def _log_trace(self, mid: int, trace: StageTrace) -> None:
        if trace.stage == ANTIVIRUS and trace.outcome != SKIPPED:
            hit = trace.hits[0] if trace.hits else ""
            if "VIRAL" in hit:
                self.maillog.info(f"MID {mid} antivirus positive '{hit.split()[-1]}'")
            elif hit:
                self.maillog.info(f"MID {mid} antivirus {hit.split(':', 1)[1].split()[0].lower()}")
            elif trace.misses and "disabled" not in trace.misses[0]:
                self.maillog.info(f"MID {mid} antivirus negative")
        elif trace.stage == OUTBREAK_FILTERS and trace.outcome != SKIPPED:
            verdict = "positive" if trace.hits else "negative"
            self.maillog.info(f"MID {mid} Outbreak Filters: verdict {verdict}"
                              + (f" ({', '.join(trace.hits)})" if trace.hits else ""))
        elif trace.hits:
            self.maillog.info(f"MID {mid} {trace.stage.replace('_', ' ')} matched: "
                              f"{', '.join(trace.hits)}")

    async def _finish_unqueued(self, entry: Entry, result: ScanResult) -> None:
        """Drop or bounce: every recipient reaches a final state and the entry goes.

        A bounce's DSN is spooled (by `bounce`) before the original is removed.
        """
        if result.action == DROP:
            self.maillog.info(f"MID {entry.mid} dropped by {result.reason}")
        for r in entry.recipients:
            r.status = DELETED if result.action == DROP else BOUNCED
            r.last_error = f"5.7.1 message bounced by {result.reason}"
            if result.action == BOUNCE:
                self.maillog.info(f"Bounced: MID {entry.mid} to RID [{r.rid}] - {r.last_error}")
        if result.action == BOUNCE:
            planned = (await self.plan(entry, "dsn", ["dsn"]))["dsn"] if entry.sender else None
            self.bounce(entry, entry.recipients, f"5.7.1 message bounced by {result.reason}",
                        dsn_mid=planned)
        await self.spool.remove_async(entry.mid)
        self.maillog.info(f"Message finished MID {entry.mid} done")
