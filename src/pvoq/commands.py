"""Operator commands both roles answer on the admin socket.

`status`, `tophosts`, `hoststatus`, `showrecipients`, `deleterecipients`,
`suspendlisteners`, `resumelisteners`, `suspend`, `resume`, `suspenddel`,
`resumedel`, `delivernow`, `rate`, `resetcounters`, `reload`. Each returns
data (the CLI renders it in AsyncOS's shape, or as JSON) or raises
`CommandError` with the text AsyncOS would print. The special destinations
`the.cpq.host` and `the.cpq.release.host` are hosts like any other here:
unlike AsyncOS, `hoststatus` and `showrecipients` work on them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pvoq.admin.protocol import CommandError
from pvoq.delivery.queue import Selector

if TYPE_CHECKING:
    from pvoq.appliance import Appliance

COUNTERS = ("messages_received", "recipients_received", "soft_bounced_events",
            "completed_recipients", "hard_bounced_recipients", "hard_bounced_5xx",
            "expired_recipients", "delivered_recipients", "deleted_recipients")


def _selector(app: Appliance, args: dict[str, Any]) -> tuple[Selector, str]:
    by, value = args.get("by") or "all", (args.get("value") or "").strip()
    if by == "all":
        return (lambda e, r: True), "all"
    if not value:
        raise CommandError(f"Missing value for {by}.")
    if by == "host":
        if value not in app.queues.hosts:
            raise CommandError("No record of that host.")
        return (lambda e, r: r.host == value), f"host {value}"
    if by == "sender":
        return (lambda e, r: e.sender.lower() == value.lower()), f"sender {value}"
    raise CommandError(f"Unknown selection: {by} (host, sender or all)")


def register_common_commands(app: Appliance) -> None:

    def counters() -> dict[str, list[int]]:
        return {name: list(app.counters.row(name)) for name in COUNTERS}

    async def status(args: dict[str, Any]) -> dict[str, Any]:
        queues = app.queues
        pending = [r for e in queues.entries.values() for r in e.recipients if r.pending]
        return {"data": {
            "status_as_of": time.time(), "up_since": app.started,
            "counters_reset": app.counters.reset_time,
            "system_status": "Online" if app.online else "Offline",
            "receiving_suspended": sorted(app.suspended),
            "delivery_suspended": queues.suspended,
            "hostname": app.config.hostname, "role": app.role,
            "counters": counters(),
            "active_recipients": len(pending),
            "unattempted_recipients": sum(1 for r in pending if r.attempts == 0),
            "attempted_recipients": sum(1 for r in pending if r.attempts > 0),
            "messages_in_queue": len(queues.entries),
            "destinations_in_memory": len(queues.hosts),
            "oldest_message": queues.oldest(),
            **app.status_gauges(),
        }}

    async def tophosts(args: dict[str, Any]) -> dict[str, Any]:
        rows = []
        for name, host in app.queues.hosts.items():
            s = host.stats
            rows.append({"host": name, "down": s.down,
                         "active_rcpts": app.queues.active_recipients(name),
                         "conn_out": s.conn_out, "deliv_rcpts": s.delivered,
                         "soft_bounces": s.soft_bounced, "hard_bounces": s.hard_bounced})
        key = args.get("sort") or "active_rcpts"
        if key not in ("active_rcpts", "conn_out", "deliv_rcpts", "soft_bounces",
                       "hard_bounces"):
            raise CommandError(f"Unknown sort order: {key}")
        rows.sort(key=lambda r: (-int(str(r[key])), str(r["host"])))
        return {"data": {"status_as_of": time.time(), "hosts": rows}}

    async def hoststatus(args: dict[str, Any]) -> dict[str, Any]:
        name = (args.get("host") or "").strip()
        host = app.queues.hosts.get(name)
        if host is None:
            raise CommandError(f"No record of host: {name}")
        s = host.stats
        pending = [r for e in app.queues.entries.values() for r in e.pending_for(name)]
        return {"data": {
            "host": name, "status_as_of": time.time(), "down": s.down,
            "delivered_recipients": s.delivered, "soft_bounced": s.soft_bounced,
            "hard_bounced": s.hard_bounced, "deleted_recipients": s.deleted,
            "connections": s.connections, "active_recipients": len(pending),
            "unattempted_recipients": sum(1 for r in pending if r.attempts == 0),
            "attempted_recipients": sum(1 for r in pending if r.attempts > 0),
            "current_outbound_connections": s.conn_out,
            "oldest_message": app.queues.oldest(name), "last_activity": s.last_activity or None,
            "first_seen": s.first_seen, "last_error": s.last_error,
            "delivery_suspended": app.queues.suspended,
        }}

    async def showrecipients(args: dict[str, Any]) -> dict[str, Any]:
        select, what = _selector(app, args)
        limit = int(args.get("limit") or 1000)
        found = app.queues.matching(select)
        messages = [{"mid": e.mid, "size": e.size, "sender": e.sender,
                     "subject": str(e.meta.get("subject", "")), "received": e.received,
                     "recipients": [{"rid": r.rid, "attempts": r.attempts, "address": r.address,
                                     "host": r.host, "last_error": r.last_error}
                                    for r in rcpts]}
                    for e, rcpts in found[:limit]]
        return {"data": {"selection": what, "total": len(found), "messages": messages}}

    async def deleterecipients(args: dict[str, Any]) -> dict[str, Any]:
        select, what = _selector(app, args)
        limit = int(args["limit"]) if args.get("limit") else None
        count = app.queues.delete(select, why="deleterecipients", limit=limit)
        app.maillog.info(f"deleterecipients ({what}): {count} messages deleted")
        text = f"{count} messages deleted." if count else "No messages deleted."
        return {"text": text, "data": {"deleted": count}}

    async def suspendlisteners(args: dict[str, Any]) -> dict[str, Any]:
        names = app.listener_names(args.get("listener") or "all")
        done = await app.suspend_listeners(names, delay_s=float(args.get("delay") or 0))
        if not done:
            return {"text": "No listeners were suspended."}
        return {"text": f"Receiving suspended for {', '.join(done)}."}

    async def resumelisteners(args: dict[str, Any]) -> dict[str, Any]:
        done = await app.resume_listeners(app.listener_names(args.get("listener") or "all"))
        if not done:
            return {"text": "No listeners were resumed."}
        return {"text": f"Receiving resumed for {', '.join(done)}."}

    async def suspenddel(args: dict[str, Any]) -> dict[str, Any]:
        app.queues.suspend()
        app.maillog.info("Delivery suspended by operator")
        return {"text": "Mail delivery suspended."}

    async def resumedel(args: dict[str, Any]) -> dict[str, Any]:
        was = app.queues.suspended
        app.queues.resume()
        if was:
            app.maillog.info("Delivery resumed by operator")
        return {"text": "Mail delivery resumed." if was else "Mail delivery was not suspended."}

    async def suspend(args: dict[str, Any]) -> dict[str, Any]:
        first = await suspendlisteners({"listener": "all", "delay": args.get("delay")})
        await suspenddel({})
        return {"text": f"{first['text']}\nMail delivery suspended."}

    async def resume(args: dict[str, Any]) -> dict[str, Any]:
        first = await resumelisteners({"listener": "all"})
        second = await resumedel({})
        return {"text": f"{first['text']}\n{second['text']}"}

    async def delivernow(args: dict[str, Any]) -> dict[str, Any]:
        host = args.get("host") or None
        if host and host not in app.queues.hosts:
            raise CommandError(f"No record of host: {host}")
        app.queues.wake(host)
        return {"text": f"Delivery rescheduled for {host or 'all hosts'}."}

    async def rate(args: dict[str, Any]) -> dict[str, Any]:
        conn_in = sum(g.active for g in app.gates.values())
        conn_out = sum(h.stats.conn_out for h in app.queues.hosts.values())
        return {"data": {"time": time.time(), "connections_in": conn_in,
                         "connections_out": conn_out,
                         "counters": {k: v[1] for k, v in counters().items()},
                         "messages_in_queue": len(app.queues.entries)}}

    async def resetcounters(args: dict[str, Any]) -> dict[str, Any]:
        app.counters.reset()
        return {"text": "Counters reset."}

    async def reload(args: dict[str, Any]) -> dict[str, Any]:
        return {"text": await app.reload()}

    for name, command in (("status", status), ("tophosts", tophosts),
                          ("hoststatus", hoststatus), ("showrecipients", showrecipients),
                          ("deleterecipients", deleterecipients),
                          ("suspendlisteners", suspendlisteners),
                          ("resumelisteners", resumelisteners), ("suspenddel", suspenddel),
                          ("resumedel", resumedel), ("suspend", suspend), ("resume", resume),
                          ("delivernow", delivernow), ("rate", rate),
                          ("resetcounters", resetcounters), ("reload", reload)):
        app.admin.register(name, command)
