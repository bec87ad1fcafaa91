"""Delivery queues: one worker per destination host, retries with back-off.

A *host* is what `tophosts` lists: a recipient domain (`example.com`), or one
of the special destinations `the.cpq.host` (gateway → manager) and
`the.cpq.release.host` (manager → gateways). Each recipient of a spool entry
names its host; the host's worker delivers every due recipient over as few
connections as it can (one per target address, transactions reused), and
records the outcome in the spool entry (a durable spool log record) before moving on.

Outcomes: 2xx delivered; 4xx or a failed connection: deferred with back-off
(`delivery.backoff`); a failed connection (or TLS) also marks the host down
(the `*` of `tophosts`) until a connection succeeds; 5xx from a downstream
host: bounced (hard). A CPQ destination never bounces quarantined or released mail:
a 5xx there is a misconfiguration, so the message is held and retried at the
maximum interval (nothing is lost, the log says why).

Several entries may share one transaction where a `Bundler` says so (a
gateway's release receipts: `gateway.receipts`): `groups` cuts the due
entries of a pass into groups before they are spread over connections, and
`bundle` makes a group one transaction once the connection is open (or
declines, when the peer does not take it: the entries then go one by one).
Every entry of a bundle gets the bundle's reply, recorded as its own.

Wake-ups are events, not polling: `add()` sets the host's event; a worker
otherwise sleeps until its earliest retry time. The clock is injectable so
tests control time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pvoq import metrics
from pvoq.counters import Counters
from pvoq.delivery.backoff import retry_delay
from pvoq.maillog import MailLog
from pvoq.smtp.client import DeliveryError, Reply, SmtpConnection
from pvoq.spool.store import BOUNCED, DELETED, DELIVERED, Entry, Recipient, Spool

Selector = Callable[[Entry, Recipient], bool]
MESSAGES_PER_CONNECTION = 20


@dataclass(frozen=True)
class Target:
    """Where one entry goes: an address to connect to and what to say."""

    host: str
    port: int
    extra: Sequence[str] = ()      # extra commands inside the transaction (XCPQ META)
    start_note: str = ""
    done_note: str = ""


async def _all_of(tasks: set[asyncio.Future[None]]) -> None:
    """Wait for every one of *tasks*, then raise the first error among them, if any."""
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


def _rids(rcpts: Sequence[Recipient]) -> str:
    return "[" + ", ".join(str(r.rid) for r in rcpts) + "]"


def _note(note: str) -> str:
    return f" {note}" if note else ""


class Destination:
    """How to reach one host; subclasses for SMTP routes and for CPQ."""

    name: str
    holds_on_permanent_failure = False
    expires = True  # False: mail for this host is never bounced for its age

    def target(self, entry: Entry) -> Target | None:
        raise NotImplementedError

    def connection(self) -> SmtpConnection:
        raise NotImplementedError

    def peer_status(self) -> list[dict[str, Any]]:
        """Per peer, when a destination tries several (a gateway's managers): for hoststatus."""
        return []


@dataclass
class HostStats:
    """Counters and gauges for `tophosts` and `hoststatus`."""

    name: str
    down: bool = False
    conn_out: int = 0
    delivered: int = 0
    soft_bounced: int = 0
    hard_bounced: int = 0
    last_activity: float = 0.0
    last_error: str = ""
    first_seen: float = 0.0
    connections: int = 0
    deleted: int = 0


@dataclass
class _Host:
    stats: HostStats
    event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    destination: Destination | None = None  # the one its last pass used


BounceHook = Callable[[Entry, list[Recipient], str], None]
Item = tuple[Entry, list[Recipient], Target]  # an entry, its due recipients, where they go


@dataclass(frozen=True)
class Bundle:
    """One transaction carrying several entries (each with one recipient, the same)."""

    items: list[Item]
    sender: str
    recipient: str
    body: bytes
    target: Target  # its extra lines (the bundle's metadata) and notes


class Bundler:
    """Which due entries of a host may share a transaction, and how (none by default)."""

    def groups(self, items: list[Item]) -> list[list[Item]]:
        """*items* cut into groups that may each travel as one transaction (in order)."""
        return [[item] for item in items]

    def bundle(self, conn: SmtpConnection, group: list[Item]) -> Bundle | None:
        """*group* as one transaction on *conn*; None: one transaction per entry."""
        return None


@dataclass(frozen=True)
class Final:
    """A recipient's delivery that just ended: how (`delivered`, `bounced` or `expired`),
    at which host, with what reply (for an expiry: its reason)."""

    recipient: Recipient
    outcome: str
    host: str
    reply: str


# Hears of recipients whose delivery ended, before that outcome is handed to the spool:
# what it spools first (a release receipt) is durable whenever the outcome is.
FinalHook = Callable[[Entry, list[Final]], None]


class DeliveryQueues:
    """Every queued entry of the appliance, and one delivery worker per destination host.

    `add` takes a durable, routed entry (each recipient names its host) and
    wakes its hosts' workers; `destination_for(host)` says how to reach a
    host (SMTP route or CPQ). Outcomes are written to the spool entry before
    the worker moves on; `on_bounce` hears of hard bounces and expiries (the
    gateway's DSNs), `on_finished` of entries done. What the operator
    commands read: `entries`, `hosts` (their `HostStats`), `matching`,
    `oldest`, `active_recipients`; what they do: `delete`, `wake`,
    `suspend`/`resume`. Retry bounds and the per-host connection limit are
    plain attributes a reload sets.
    """

    def __init__(self, *, spool: Spool, maillog: MailLog,
                 destination_for: Callable[[str], Destination],
                 retry_min_s: float, retry_max_s: float,
                 max_queue_lifetime_s: float | None = None,
                 max_connections_per_host: int = 10,
                 clock: Callable[[], float] = time.time,
                 on_finished: Callable[[Entry], None] | None = None,
                 on_bounce: BounceHook | None = None,
                 counters: Counters | None = None,
                 on_final: FinalHook | None = None,
                 bundler: Bundler | None = None) -> None:
        self.spool = spool
        self.log = maillog
        self.destination_for = destination_for
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.max_queue_lifetime_s = max_queue_lifetime_s
        self.max_connections_per_host = max_connections_per_host
        self.clock = clock
        self.on_finished = on_finished
        self.on_bounce = on_bounce
        self.on_final = on_final
        self.bundler = bundler or Bundler()
        self.counters = counters or Counters()
        self.entries: dict[int, Entry] = {}
        # Per destination host, the entries added with recipients pending for it (MID →
        # entry): a host's pass reads its own entries, not the whole queue, so a backlog
        # for one destination costs the others nothing. An entry leaves when it is
        # finished, or when a pass finds nothing pending there any more.
        self._by_host: dict[str, dict[int, Entry]] = {}
        self.hosts: dict[str, _Host] = {}
        self._running = False
        self._open = asyncio.Event()  # cleared by suspenddel
        self._open.set()

    # -- suspend / resume delivery (suspenddel, resumedel) -------------------
    @property
    def suspended(self) -> bool:
        return not self._open.is_set()

    def suspend(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    # -- the queue ---------------------------------------------------------
    def add(self, entry: Entry) -> None:
        """Take a routed, durable entry and wake the workers of its hosts."""
        self.entries[entry.mid] = entry
        for host in {r.host for r in entry.recipients if r.pending and r.host}:
            self._by_host.setdefault(host, {})[entry.mid] = entry
            self._host(host).event.set()

    def queued_for(self, host: str) -> list[Entry]:
        """The queued entries with recipients pending for *host*, in the order added."""
        index = self._by_host.get(host)
        if not index:
            return []
        found = []
        for mid, entry in list(index.items()):
            if self.entries.get(mid) is entry and entry.pending_for(host):
                found.append(entry)
            else:
                del index[mid]
        return found

    def _host(self, name: str) -> _Host:
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = _Host(HostStats(name, first_seen=self.clock()))
            if self._running:
                host.task = asyncio.create_task(self._worker(host), name=f"deliver:{name}")
        return host

    def wake(self, host: str | None = None) -> None:
        """Deliver now: clear the back-off of *host* (or of every host)."""
        for name, h in self.hosts.items():
            if host is None or name == host:
                for entry in self.queued_for(name):
                    for r in entry.pending_for(name):
                        r.next_attempt = 0.0
                h.event.set()

    def peer_status(self, host: str) -> list[dict[str, Any]]:
        """Per peer of *host*'s destination as its last delivery pass found it, when the
        destination tries several (a gateway's managers); empty otherwise."""
        found = self.hosts.get(host)
        destination = found.destination if found is not None else None
        return destination.peer_status() if destination is not None else []

    def active_recipients(self, host: str) -> int:
        return sum(len(e.pending_for(host)) for e in self.queued_for(host))

    def matching(self, select: Selector) -> list[tuple[Entry, list[Recipient]]]:
        """Queued messages and their pending recipients chosen by *select*, oldest first."""
        found = []
        for entry in sorted(self.entries.values(), key=lambda e: (e.received, e.mid)):
            rcpts = [r for r in entry.recipients if r.pending and select(entry, r)]
            if rcpts:
                found.append((entry, rcpts))
        return found

    def delete(self, select: Selector, *, why: str = "deleterecipients",
               limit: int | None = None) -> int:
        """Delete the pending recipients *select* chooses (at most *limit* messages)."""
        touched = 0
        for entry, rcpts in self.matching(select)[:limit]:
            for r in rcpts:
                r.status = DELETED
                self._host(r.host or "?").stats.deleted += 1
                self.counters.inc("deleted_recipients")
            rids = ", ".join(str(r.rid) for r in rcpts)
            self.log.info(f"MID {entry.mid} RID [{rids}] deleted by {why}")
            self._commit(entry, outcome="aborted")
            touched += 1
        return touched

    def oldest(self, host: str | None = None) -> float | None:
        times = [e.received for e in self.queued_for(host)] if host else [
            e.received for e in self.entries.values() if any(r.pending for r in e.recipients)]
        return min(times) if times else None

    def start(self) -> None:
        self._running = True
        for host in self.hosts.values():
            if host.task is None:
                host.task = asyncio.create_task(self._worker(host),
                                                name=f"deliver:{host.stats.name}")

    async def stop(self) -> None:
        self._running = False
        tasks = [h.task for h in self.hosts.values() if h.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    # -- one host ----------------------------------------------------------
    def _due(self, name: str) -> tuple[list[tuple[Entry, list[Recipient]]], float | None]:
        now = self.clock()
        due: list[tuple[Entry, list[Recipient]]] = []
        earliest: float | None = None
        for entry in sorted(self.queued_for(name), key=lambda e: (e.received, e.mid)):
            pending = entry.pending_for(name)
            ready = [r for r in pending if r.next_attempt <= now]
            waiting = [r.next_attempt for r in pending if r.next_attempt > now]
            if ready:
                due.append((entry, ready))
            if waiting:
                earliest = min([*waiting, earliest] if earliest is not None else waiting)
        return due, earliest

    def expire(self, name: str) -> None:
        """Bounce what waited longer than the maximum time in queue (not for CPQ hosts)."""
        lifetime = self.max_queue_lifetime_s
        if lifetime is None or not self.destination_for(name).expires:
            return
        limit = self.clock() - lifetime
        for entry in [e for e in self.queued_for(name) if e.received < limit]:
            rcpts = entry.pending_for(name)
            if not rcpts:
                continue
            reason = (f"5.4.7 - Delivery expired (message too old) "
                      f"{rcpts[0].last_error or 'never attempted'}")
            for r in rcpts:
                r.status = BOUNCED
                r.last_error = reason
                self._host(name).stats.hard_bounced += 1
                self.counters.inc("hard_bounced_recipients")
                self.counters.inc("expired_recipients")
            rids = ", ".join(str(r.rid) for r in rcpts)
            self.log.info(f"Bounced: MID {entry.mid} to RID [{rids}] - {reason}")
            if self.on_bounce is not None:
                self.on_bounce(entry, rcpts, reason)
            if self.on_final is not None:
                self.on_final(entry, [Final(r, "expired", name, reason) for r in rcpts])
            self._commit(entry)

    async def _worker(self, host: _Host) -> None:
        name = host.stats.name
        while True:
            await self._open.wait()
            host.event.clear()
            due: list[tuple[Entry, list[Recipient]]] = []
            try:
                self.expire(name)
                due, earliest = self._due(name)
                if not due:
                    timeout = None if earliest is None else max(0.05, earliest - self.clock())
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(host.event.wait(), timeout)
                    continue
                await self.deliver_host(name, due)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A bug or a disk error must not silence a destination: log it,
                # put what was due back at the retry interval, and go on.
                self.log.critical(f"Delivery to {name}: application fault: "
                                  f"{type(exc).__name__}: {exc}; its mail stays queued")
                for _, rcpts in due:
                    for r in rcpts:
                        if r.pending:
                            r.next_attempt = self.clock() + self.retry_min_s
                await asyncio.sleep(min(self.retry_min_s, 5.0))

    async def deliver_host(self, name: str, due: list[tuple[Entry, list[Recipient]]]) -> None:
        """One pass over the due recipients of *name*; returns when each has an outcome."""
        destination = self.destination_for(name)
        host = self._host(name)
        host.destination = destination
        by_target: dict[tuple[str, int], list[Item]] = {}
        for entry, rcpts in due:
            target = destination.target(entry)
            if target is None:
                self._defer(entry, rcpts, None, f"no route to {name}", host.stats)
                continue
            by_target.setdefault((target.host, target.port), []).append((entry, rcpts, target))
        batches = []
        for (addr, port), items in by_target.items():
            # One connection per MESSAGES_PER_CONNECTION due transactions, up to
            # max_connections_per_host: a handshake is dear, a backlog is dearer.
            groups = self.bundler.groups(items)
            wanted = -(-len(groups) // MESSAGES_PER_CONNECTION)
            width = max(1, min(self.max_connections_per_host, wanted))
            batches += [(addr, port, groups[k::width]) for k in range(width)]
        await asyncio.gather(*(self._deliver_batch(destination, host, addr, port, items)
                               for addr, port, items in batches))

    async def _deliver_batch(self, destination: Destination, host: _Host, addr: str, port: int,
                             groups: list[list[Item]]) -> None:
        """One connection carrying *groups*: one at a time, or up to `conn.in_flight` under
        way at once where the peer takes pipelined transactions (CPQ); a broken link
        defers the rest."""
        conn = destination.connection()
        host.stats.conn_out += 1
        host.stats.connections += 1
        try:
            await conn.open(addr, port)
            host.stats.down = False
            broken: list[DeliveryError] = []
            running: set[asyncio.Future[None]] = set()
            rest: list[list[Item]] = []
            for index, group in enumerate(groups):
                if running and len(running) >= conn.in_flight:
                    done, running = await asyncio.wait(running,
                                                       return_when=asyncio.FIRST_COMPLETED)
                    if any(task.exception() is not None for task in done):
                        await _all_of(done | running)  # an application fault goes up
                if broken:
                    rest = groups[index:]
                    break
                if self.suspended:  # suspenddel: stop between messages, keep the rest queued
                    break
                # Deleted (deleterecipients) or finished since the pass began?
                live = [(e, [r for r in rcpts if r.pending], t) for e, rcpts, t in group]
                live = [(e, rcpts, t) for e, rcpts, t in live if e.mid in self.entries and rcpts]
                if not live:
                    continue
                if conn.in_flight == 1:
                    await self._deliver_group(conn, destination, host, live, broken)
                else:
                    running.add(asyncio.ensure_future(
                        self._deliver_group(conn, destination, host, live, broken)))
            await _all_of(running)
            for group in rest:
                for e, r, _ in group:
                    pending = [x for x in r if x.pending]
                    if pending:
                        self._defer(e, pending, conn.dcid, broken[0].reason, host.stats)
        except DeliveryError as exc:
            host.stats.down = True
            for group in groups:
                for entry, rcpts, _ in group:
                    self._defer(entry, rcpts, conn.dcid or None, exc.reason, host.stats)
        finally:
            host.stats.conn_out -= 1
            await conn.close()
            host.stats.last_activity = self.clock()

    async def _deliver_group(self, conn: SmtpConnection, destination: Destination,
                             host: _Host, live: list[Item], broken: list[DeliveryError]) -> None:
        """The entries of one group (a bundle, or one by one); a broken link defers those
        left and is added to *broken*."""
        bundle = self.bundler.bundle(conn, live) if len(live) > 1 else None
        try:
            if bundle is not None:
                await self._deliver_bundle(conn, destination, bundle, host)
                return
            for position, (entry, rcpts, target) in enumerate(live):
                if broken:  # the link broke under another transfer of this connection
                    live = live[position:]
                    raise broken[0]
                if self.suspended:
                    break
                try:
                    await self._deliver_one(conn, destination, entry, rcpts, target, host)
                except DeliveryError:
                    live = live[position:]
                    raise
        except DeliveryError as exc:
            host.stats.down = True
            if not broken:
                broken.append(exc)
            for e, r, _ in live:
                pending = [x for x in r if x.pending]
                if pending:
                    self._defer(e, pending, conn.dcid, exc.reason, host.stats)

    async def _deliver_bundle(self, conn: SmtpConnection, destination: Destination,
                              bundle: Bundle, host: _Host) -> None:
        """One transaction for the entries of *bundle*; its reply is each one's."""
        target = bundle.target
        first = bundle.items[0][0]
        started = metrics.now()
        for entry, rcpts, _ in bundle.items[1:]:  # what `send` says of the first, of each
            self.log.info(f"Delivery start DCID {conn.dcid} MID {entry.mid} to RID "
                          f"{_rids(rcpts)}{_note(target.start_note)} (with MID {first.mid})")
        results = await conn.send(mid=first.mid, sender=bundle.sender,
                                  recipients=[(0, bundle.recipient)], body=bundle.body,
                                  extra=target.extra, start_note=target.start_note,
                                  done_note=target.done_note)
        metrics.cpq_transfer(host.stats.name, started)
        reply = results[0]
        for entry, rcpts, _ in bundle.items:
            if reply.ok and entry is not first and entry.mid in self.entries:
                self.log.info(f"MID {entry.mid} RID {_rids(rcpts)} Response '{reply.text}'")
                self.log.info(f"Message done DCID {conn.dcid} MID {entry.mid} to RID "
                              f"{_rids(rcpts)}{_note(target.done_note)}")
            self._settle(entry, rcpts, {r.rid: reply for r in rcpts}, conn.dcid,
                         destination, host, target)

    async def _deliver_one(self, conn: SmtpConnection, destination: Destination, entry: Entry,
                           rcpts: list[Recipient], target: Target, host: _Host) -> None:
        started = metrics.now()
        with self.spool.open_body(entry.mid) as body:  # sent from the spool, piece by piece
            results = await conn.send(mid=entry.mid, sender=entry.sender,
                                      recipients=[(r.rid, r.address) for r in rcpts],
                                      body=body, extra=target.extra,
                                      start_note=target.start_note, done_note=target.done_note)
        metrics.cpq_transfer(host.stats.name, started)
        self._settle(entry, rcpts, results, conn.dcid, destination, host, target)

    def _settle(self, entry: Entry, rcpts: list[Recipient], results: dict[int, Reply],
                dcid: int, destination: Destination, host: _Host, target: Target) -> None:
        """Record what the server answered for *rcpts* of *entry*, then commit it."""
        if entry.mid not in self.entries:
            return  # deleted by an operator while it was on the wire: nothing left to record
        finals: list[Final] = []
        where = target.host if target.port == 25 else f"{target.host}:{target.port}"
        for r in rcpts:
            if r.pending:  # deleterecipients may have taken it meanwhile
                reply = results[r.rid]
                self._record(entry, r, reply, dcid, destination, host.stats)
                if not r.pending:
                    finals.append(Final(r, "delivered" if reply.ok else "bounced", where,
                                        f"{reply.code} {reply.text}"))
        if finals and self.on_final is not None:
            self.on_final(entry, finals)
        self._commit(entry)

    def _record(self, entry: Entry, r: Recipient, reply: Reply, dcid: int,
                destination: Destination, stats: HostStats) -> None:
        r.attempts += 1
        if reply.ok:
            r.status = DELIVERED
            stats.delivered += 1
            self.counters.inc("delivered_recipients")
            return
        text = f"{reply.code} {reply.text}"
        if reply.temporary or destination.holds_on_permanent_failure:
            if not reply.temporary:
                self.log.warning(f"MID {entry.mid} RID [{r.rid}] held: {stats.name} refused it "
                                 f"permanently ('{text}'); it stays queued")
            self._defer(entry, [r], dcid, text, stats, counted=True)
            if not reply.temporary:
                r.next_attempt = self.clock() + self.retry_max_s
            return
        r.status = BOUNCED
        r.last_error = text
        stats.hard_bounced += 1
        self.counters.inc("hard_bounced_recipients")
        self.counters.inc("hard_bounced_5xx")
        self.log.info(f"Bounced: DCID {dcid} MID {entry.mid} to RID [{r.rid}] - {text}")
        if self.on_bounce is not None:
            self.on_bounce(entry, [r], text)

    def _defer(self, entry: Entry, rcpts: list[Recipient], dcid: int | None, reason: str,
               stats: HostStats, *, counted: bool = False) -> None:
        now = self.clock()
        for r in rcpts:
            if not counted:
                r.attempts += 1
            r.last_error = reason
            r.next_attempt = now + retry_delay(r.attempts, min_s=self.retry_min_s,
                                               max_s=self.retry_max_s)
            stats.soft_bounced += 1
            self.counters.inc("soft_bounced_events")
        stats.last_error = reason
        rids = ", ".join(str(r.rid) for r in rcpts)
        prefix = f"DCID {dcid} " if dcid else ""
        self.log.info(f"Delayed: {prefix}MID {entry.mid} to RID [{rids}] - {reason}")
        if not counted:
            self._commit(entry)

    def _commit(self, entry: Entry, *, outcome: str = "done") -> None:
        """Make the entry's new state durable; forget it once every recipient is final."""
        if entry.finished:
            # Not waited for: the message is delivered (or bounced); a crash before the
            # removal is durable delivers it again, as it would after a lost reply.
            self.spool.remove_soon(entry.mid, self._commit_failed)
            self.entries.pop(entry.mid, None)
            for host in {r.host for r in entry.recipients if r.host}:
                index = self._by_host.get(host)
                if index is not None and index.get(entry.mid) is entry:
                    del index[entry.mid]
            self.counters.inc("completed_recipients",
                              sum(1 for r in entry.recipients if r.status != DELETED))
            self.log.info(f"Message finished MID {entry.mid} {outcome}")
            if self.on_finished is not None:
                self.on_finished(entry)
        else:
            self.spool.update_soon(entry, self._commit_failed)

    def _commit_failed(self, exc: BaseException) -> None:
        self.log.critical(f"Delivery queue: cannot record a delivery outcome in the spool "
                          f"({exc}); the message may be delivered again after a restart")
