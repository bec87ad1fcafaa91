"""Operator commands both roles answer on the admin socket.

`status`, `tophosts`, `hoststatus`, `showrecipients`, `deleterecipients`,
`suspendlisteners`, `resumelisteners`, `suspend`, `resume`, `suspenddel`,
`resumedel`, `delivernow`, `rate`, `resetcounters`, `reload`. Each returns
data (the CLI renders it in AsyncOS's shape, or as JSON) or raises
`CommandError` with the text AsyncOS would print. The special destinations
`the.cpq.host` and `the.cpq.release.host` are hosts like any other here:
unlike AsyncOS, `hoststatus` and `showrecipients` work on them.

`showrecipients` and `deleterecipients` also see the messages not yet in a
delivery queue (a gateway's work queue: waiting to be scanned, or for a
retry after a temporary failure), given as `incoming` (`Incoming`); their
host is shown as `(work queue)`.

Each group is a `CommandSet` given only what its commands use: the delivery
queues (`QueueCommands`), the listeners (`ListenerCommands`), both
(`SuspendCommands`), the counters and gauges (`StatusCommands`), the
appliance's reload (`ReloadCommands`). `Appliance.register_commands` wires
them once the role has made its queues.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pvoq.admin.protocol import CommandError
from pvoq.admin.registry import CommandSet, command
from pvoq.config.model import Config
from pvoq.counters import Counters
from pvoq.delivery.queue import DeliveryQueues, Selector
from pvoq.listeners import ListenerSet
from pvoq.maillog import MailLog
from pvoq.spool.store import Entry, Recipient

COUNTERS = ("messages_received", "recipients_received", "soft_bounced_events",
            "completed_recipients", "hard_bounced_recipients", "hard_bounced_5xx",
            "expired_recipients", "delivered_recipients", "deleted_recipients")
SORT_KEYS = ("active_rcpts", "conn_out", "deliv_rcpts", "soft_bounces", "hard_bounces")


def selector(queues: DeliveryQueues, args: dict[str, Any]) -> tuple[Selector, str]:
    """`by` (host, sender or all) and `value` → a recipient selector and its description."""
    by, value = args.get("by") or "all", (args.get("value") or "").strip()
    if by == "all":
        return (lambda e, r: True), "all"
    if not value:
        raise CommandError(f"Missing value for {by}.")
    if by == "host":
        if value not in queues.hosts:
            raise CommandError("No record of that host.")
        return (lambda e, r: r.host == value), f"host {value}"
    if by == "sender":
        return (lambda e, r: e.sender.lower() == value.lower()), f"sender {value}"
    raise CommandError(f"Unknown selection: {by} (host, sender or all)")


WORK_QUEUE_HOST = "(work queue)"  # the host column of a message not yet routed


class Incoming(Protocol):
    """Messages held before any delivery queue (a gateway's `WorkQueue`)."""

    def held(self) -> list[Entry]: ...

    async def delete(self, mid: int) -> bool: ...


class QueueCommands(CommandSet):
    """The delivery queues: what waits for which host, delete, deliver now, suspend;
    and the messages *incoming* holds before them."""

    def __init__(self, queues: DeliveryQueues, maillog: MailLog,
                 incoming: Incoming | None = None) -> None:
        self.queues = queues
        self.maillog = maillog
        self.incoming = incoming

    def _incoming(self, select: Selector, by_host: bool) -> list[tuple[Entry, list[Recipient]]]:
        if self.incoming is None or by_host:
            return []
        found = []
        for entry in self.incoming.held():
            rcpts = [r for r in entry.recipients if r.pending and select(entry, r)]
            if rcpts:
                found.append((entry, rcpts))
        return found

    @command("tophosts")
    async def tophosts(self, args: dict[str, Any]) -> dict[str, Any]:
        rows = []
        for name, host in self.queues.hosts.items():
            s = host.stats
            rows.append({"host": name, "down": s.down,
                         "active_rcpts": self.queues.active_recipients(name),
                         "conn_out": s.conn_out, "deliv_rcpts": s.delivered,
                         "soft_bounces": s.soft_bounced, "hard_bounces": s.hard_bounced})
        key = args.get("sort") or "active_rcpts"
        if key not in SORT_KEYS:
            raise CommandError(f"Unknown sort order: {key}")
        rows.sort(key=lambda r: (-int(str(r[key])), str(r["host"])))
        return {"data": {"status_as_of": time.time(), "hosts": rows}}

    @command("hoststatus")
    async def hoststatus(self, args: dict[str, Any]) -> dict[str, Any]:
        name = (args.get("host") or "").strip()
        host = self.queues.hosts.get(name)
        if host is None:
            raise CommandError(f"No record of host: {name}")
        s = host.stats
        pending = [r for e in self.queues.queued_for(name) for r in e.pending_for(name)]
        return {"data": {
            "host": name, "status_as_of": time.time(), "down": s.down,
            "delivered_recipients": s.delivered, "soft_bounced": s.soft_bounced,
            "hard_bounced": s.hard_bounced, "deleted_recipients": s.deleted,
            "connections": s.connections, "active_recipients": len(pending),
            "unattempted_recipients": sum(1 for r in pending if r.attempts == 0),
            "attempted_recipients": sum(1 for r in pending if r.attempts > 0),
            "current_outbound_connections": s.conn_out,
            "oldest_message": self.queues.oldest(name),
            "last_activity": s.last_activity or None,
            "first_seen": s.first_seen, "last_error": s.last_error,
            "delivery_suspended": self.queues.suspended,
            "peers": self.queues.peer_status(name),
        }}

    @command("showrecipients")
    async def showrecipients(self, args: dict[str, Any]) -> dict[str, Any]:
        select, what = selector(self.queues, args)
        limit = int(args.get("limit") or 1000)
        found = self.queues.matching(select) + self._incoming(select, args.get("by") == "host")
        found.sort(key=lambda pair: (pair[0].received, pair[0].mid))
        messages = [{"mid": e.mid, "size": e.size, "sender": e.sender,
                     "subject": str(e.meta.get("subject", "")), "received": e.received,
                     "recipients": [{"rid": r.rid, "attempts": r.attempts, "address": r.address,
                                     "host": r.host or WORK_QUEUE_HOST,
                                     "last_error": r.last_error}
                                    for r in rcpts]}
                    for e, rcpts in found[:limit]]
        return {"data": {"selection": what, "total": len(found), "messages": messages}}

    @command("deleterecipients")
    async def deleterecipients(self, args: dict[str, Any]) -> dict[str, Any]:
        select, what = selector(self.queues, args)
        limit = int(args["limit"]) if args.get("limit") else None
        count = self.queues.delete(select, why="deleterecipients", limit=limit)
        for entry, rcpts in self._incoming(select, args.get("by") == "host"):
            if limit is not None and count >= limit:
                break
            if not self.incoming or not await self.incoming.delete(entry.mid):
                continue  # being scanned right now: in a delivery queue or gone shortly
            for _ in rcpts:
                self.queues.counters.inc("deleted_recipients")
            rids = ", ".join(str(r.rid) for r in rcpts)
            self.maillog.info(f"MID {entry.mid} RID [{rids}] deleted by deleterecipients")
            self.maillog.info(f"Message finished MID {entry.mid} aborted")
            count += 1
        self.maillog.info(f"deleterecipients ({what}): {count} messages deleted")
        text = f"{count} messages deleted." if count else "No messages deleted."
        return {"text": text, "data": {"deleted": count}}

    @command("delivernow")
    async def delivernow(self, args: dict[str, Any]) -> dict[str, Any]:
        host = args.get("host") or None
        if host and host not in self.queues.hosts:
            raise CommandError(f"No record of host: {host}")
        self.queues.wake(host)
        return {"text": f"Delivery rescheduled for {host or 'all hosts'}."}

    @command("suspenddel")
    async def suspenddel(self, args: dict[str, Any]) -> dict[str, Any]:
        self.queues.suspend()
        self.maillog.info("Delivery suspended by operator")
        return {"text": "Mail delivery suspended."}

    @command("resumedel")
    async def resumedel(self, args: dict[str, Any]) -> dict[str, Any]:
        was = self.queues.suspended
        self.queues.resume()
        if was:
            self.maillog.info("Delivery resumed by operator")
        return {"text": "Mail delivery resumed." if was else "Mail delivery was not suspended."}


class ListenerCommands(CommandSet):
    """Receiving: suspend and resume listeners (one, or `all`)."""

    def __init__(self, listeners: ListenerSet) -> None:
        self.listeners = listeners

    @command("suspendlisteners")
    async def suspendlisteners(self, args: dict[str, Any]) -> dict[str, Any]:
        names = self.listeners.names(args.get("listener") or "all")
        done = await self.listeners.suspend(names, delay_s=float(args.get("delay") or 0))
        if not done:
            return {"text": "No listeners were suspended."}
        return {"text": f"Receiving suspended for {', '.join(done)}."}

    @command("resumelisteners")
    async def resumelisteners(self, args: dict[str, Any]) -> dict[str, Any]:
        done = await self.listeners.resume(self.listeners.names(args.get("listener") or "all"))
        if not done:
            return {"text": "No listeners were resumed."}
        return {"text": f"Receiving resumed for {', '.join(done)}."}


class SuspendCommands(CommandSet):
    """`suspend` and `resume`: receiving on every listener and delivery, together."""

    def __init__(self, receiving: ListenerCommands, delivery: QueueCommands) -> None:
        self.receiving = receiving
        self.delivery = delivery

    @command("suspend")
    async def suspend(self, args: dict[str, Any]) -> dict[str, Any]:
        first = await self.receiving.suspendlisteners({"listener": "all",
                                                       "delay": args.get("delay")})
        await self.delivery.suspenddel({})
        return {"text": f"{first['text']}\nMail delivery suspended."}

    @command("resume")
    async def resume(self, args: dict[str, Any]) -> dict[str, Any]:
        first = await self.receiving.resumelisteners({"listener": "all"})
        second = await self.delivery.resumedel({})
        return {"text": f"{first['text']}\n{second['text']}"}


class StatusCommands(CommandSet):
    """`status`, `rate` and `resetcounters`: counters and gauges of the appliance.

    *config* gives the running configuration; *gauges* the role's own
    gauges (work queue, quarantine...), added to `status`.
    """

    def __init__(self, *, role: str, started: float, config: Callable[[], Config],
                 queues: DeliveryQueues, counters: Counters, listeners: ListenerSet,
                 gauges: Callable[[], dict[str, int]]) -> None:
        self.role = role
        self.started = started
        self.config = config
        self.queues = queues
        self.counters = counters
        self.listeners = listeners
        self.gauges = gauges

    def counter_rows(self) -> dict[str, list[int]]:
        """Each counter's (since reset, uptime, lifetime)."""
        return {name: list(self.counters.row(name)) for name in COUNTERS}

    @command("status")
    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        queues = self.queues
        pending = [r for e in queues.entries.values() for r in e.recipients if r.pending]
        return {"data": {
            "status_as_of": time.time(), "up_since": self.started,
            "counters_reset": self.counters.reset_time,
            "system_status": "Online" if self.listeners.online else "Offline",
            "receiving_suspended": sorted(self.listeners.suspended),
            "delivery_suspended": queues.suspended,
            "hostname": self.config().hostname, "role": self.role,
            "counters": self.counter_rows(),
            "active_recipients": len(pending),
            "unattempted_recipients": sum(1 for r in pending if r.attempts == 0),
            "attempted_recipients": sum(1 for r in pending if r.attempts > 0),
            "messages_in_queue": len(queues.entries),
            "destinations_in_memory": len(queues.hosts),
            "oldest_message": queues.oldest(),
            **self.gauges(),
        }}

    @command("rate")
    async def rate(self, args: dict[str, Any]) -> dict[str, Any]:
        conn_out = sum(h.stats.conn_out for h in self.queues.hosts.values())
        return {"data": {"time": time.time(), "connections_in": self.listeners.connections_in(),
                         "connections_out": conn_out,
                         "counters": {k: v[1] for k, v in self.counter_rows().items()},
                         "messages_in_queue": len(self.queues.entries)}}

    @command("resetcounters")
    async def resetcounters(self, args: dict[str, Any]) -> dict[str, Any]:
        self.counters.reset()
        return {"text": "Counters reset."}


class ReloadCommands(CommandSet):
    """`reload`: *reload* re-reads the configuration and says what it did, or raises."""

    def __init__(self, reload: Callable[[], Awaitable[str]]) -> None:
        self.reload_config = reload

    @command("reload")
    async def reload(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"text": await self.reload_config()}
