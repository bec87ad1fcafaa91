"""The manager's quarantine operator commands on the admin socket.

`quarantine.*`, `audit.*`: each turns the JSON arguments `pvoq cli` sends
into one call of the `QuarantineService` and its answer into
`{"text": ..., "data": ...}`. Whoever can open the admin socket (mode 0600)
is the appliance's administrator; the audit trail says who it was from the
socket's peer credentials (`admin.protocol.Peer`: the user name of the
connected process's uid, with the uid and pid in the origin), never from
anything the client sends.

The service layer's errors are `OperatorError`s (`pvoq.errors`), which the
admin socket answers with exit 1 and their text. `_guard`, around every
command, adds only what the socket does not do: a missing or malformed
argument (`KeyError`, `ValueError`) becomes a `CommandError` too, and the
service's refusals keep their text as it has always been, without quotes at
either end (a `KeyError`'s `str()` has them).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from pvoq.admin.protocol import CommandError, Peer
from pvoq.admin.registry import CommandSet, command
from pvoq.errors import OperatorError
from pvoq.quarantine.roles import ADMIN, Caller
from pvoq.quarantine.search import SearchQuery
from pvoq.quarantine.service import QuarantineService

Method = TypeVar("Method", bound=Callable[..., Awaitable[dict[str, Any]]])


def _caller(peer: Peer) -> Caller:
    """The connected user, named by the kernel's credentials of the connection (or the
    console's session), with the role the appliance's users give it."""
    return Caller(peer.actor, peer.origin, peer.role or ADMIN, peer.quarantines)


def _guard(fn: Method) -> Method:
    """A bad argument, or the service's refusal → `CommandError` (exit 1), without quotes
    at either end of its text; the commands' own `CommandError`s pass as written."""
    @functools.wraps(fn)
    async def run(*args: Any) -> dict[str, Any]:
        try:
            return await fn(*args)
        except CommandError:
            raise
        except (OperatorError, KeyError, ValueError) as exc:
            raise CommandError(str(exc).strip("'\"")) from None
    return cast(Method, run)


def _query(args: dict[str, Any]) -> SearchQuery:
    return SearchQuery.from_dict(dict(args.get("query") or {}))


class QuarantineCommands(CommandSet):
    """`quarantine.*` and `audit.*` over the `QuarantineService`."""

    def __init__(self, service: QuarantineService) -> None:
        self.service = service

    @command("quarantine.list", peer=True)
    @_guard
    async def list(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        name = args.get("quarantine")
        query = SearchQuery(quarantines=(name,) if name else (),
                            limit=int(args.get("limit", 100)), offset=int(args.get("offset", 0)))
        rows, total, exact = self.service.search_counted(_caller(peer), query)
        return {"data": {"messages": rows, "total": total, "total_exact": exact,
                         "counts": self.service.store.counts()}}

    @command("quarantine.show", peer=True)
    @_guard
    async def show(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return {"data": self.service.details(_caller(peer), int(args["mid"]))}

    def _act(self, args: dict[str, Any], peer: Peer, action: str) -> dict[str, Any]:
        result = self.service.act(_caller(peer), action, int(args["mid"]),
                                  args.get("quarantine"),
                                  recipients=list(args.get("recipients") or []) or None)
        if not result.ok:
            raise CommandError(result.text)
        return {"text": result.text, "data": result.as_dict()}

    @command("quarantine.release", peer=True)
    @_guard
    async def release(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return self._act(args, peer, "release")

    @command("quarantine.delete", peer=True)
    @_guard
    async def delete(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        return self._act(args, peer, "delete")

    @command("quarantine.delay", peer=True)
    @_guard
    async def delay(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        result = self.service.delay(_caller(peer), int(args["mid"]), str(args["delay"]),
                                    args.get("quarantine"))
        if not result.ok:
            raise CommandError(result.text)
        return {"text": result.text, "data": result.as_dict()}

    @command("quarantine.move", peer=True)
    @_guard
    async def move(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        result = self.service.move(_caller(peer), int(args["mid"]), str(args["source"]),
                                   str(args["target"]))
        if not result.ok:
            raise CommandError(result.text)
        return {"text": result.text, "data": result.as_dict()}

    @command("quarantine.copy", peer=True)
    @_guard
    async def copy(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        result = self.service.copy(_caller(peer), int(args["mid"]), str(args["address"]))
        if not result.ok:
            raise CommandError(result.text)
        return {"text": result.text, "data": result.as_dict()}

    @command("quarantine.search", peer=True)
    @_guard
    async def search(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        caller = _caller(peer)
        if args.get("saved"):
            saved = self.service.saved_searches(caller)
            if args["saved"] not in saved:
                raise CommandError(f"No saved search named {args['saved']!r}.")
            query = saved[args["saved"]].page(int(args.get("limit", 20)),
                                              int(args.get("offset", 0)))
        else:
            query = _query(args)
        rows, total, exact = self.service.search_counted(caller, query)
        return {"data": {"messages": rows, "total": total, "total_exact": exact,
                         "limit": query.limit, "offset": query.offset}}

    @command("quarantine.bulk", peer=True)
    @_guard
    async def bulk(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        caller = _caller(peer)
        query = _query(args)
        if args.get("saved"):
            query = self.service.saved_searches(caller)[args["saved"]]
        data: dict[str, Any] | None = None
        for step in self.service.bulk_steps(
                caller, query, str(args["action"]), dry_run=bool(args.get("dry_run")),
                quarantine=args.get("quarantine"), delay=args.get("delay"),
                target=args.get("target"), address=args.get("address")):
            if step is None:
                await asyncio.sleep(0)  # a slice done: let CPQ sessions and the rest run
            data = step
        assert data is not None
        verb = "would" if data["dry_run"] else "did"
        text = f"{data['action']}: {verb} act on {data['count']} messages"
        if not data["dry_run"]:
            text += f" ({data['done']} done)"
        return {"text": text + ".", "data": data}

    @command("quarantine.saved", peer=True)
    @_guard
    async def saved(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        caller = _caller(peer)
        op = args.get("op", "list")
        if op == "save":
            self.service.save_search(caller, str(args["name"]), _query(args))
            return {"text": f"Saved search {args['name']!r}."}
        if op == "delete":
            if not self.service.delete_search(caller, str(args["name"])):
                raise CommandError(f"No saved search named {args['name']!r}.")
            return {"text": f"Deleted saved search {args['name']!r}."}
        saved = self.service.saved_searches(caller)
        return {"data": {name: q.to_json() for name, q in saved.items()}}

    @command("quarantine.expire", peer=True)
    @_guard
    async def expire(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        n = self.service.expire(caller=_caller(peer))
        return {"text": f"{n} quarantine entries expired.", "data": {"expired": n}}

    @command("quarantine.rescan", peer=True)
    @_guard
    async def rescan(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        """A dry rescan: the origin gateway's verdict on a held message, nothing changed."""
        if args.get("dry_run") is not True:
            raise CommandError("only a dry run exists: quarantine rescan MID --dry-run")
        return {"data": await self.service.rescan(_caller(peer), int(args["mid"]))}

    @command("quarantine.config")
    @_guard
    async def config(self, args: dict[str, Any]) -> dict[str, Any]:
        settings = self.service.store.settings
        return {"data": {"quarantines": {
            name: {"retention_s": s.retention_s, "default_action": s.default_action,
                   "free_up_space": s.overflow, "builtin": s.builtin,
                   "early_release": s.early_release.__dict__}
            for name, s in sorted(settings.items())},
            "quota_bytes": self.service.quota_bytes}}

    @command("audit.verify")
    @_guard
    async def audit_verify(self, args: dict[str, Any]) -> dict[str, Any]:
        verdict = self.service.audit.verify()
        if not verdict.ok and verdict.broken_at is None:
            raise CommandError(f"Audit trail cannot be verified: {verdict.problem}")
        if not verdict.ok:
            raise CommandError(f"Audit trail BROKEN at record {verdict.broken_at}: "
                               f"{verdict.problem} ({verdict.records} records verified before)")
        return {"text": f"Audit trail intact: {verdict.records} records.",
                "data": {"records": verdict.records}}

    @command("audit.tail")
    @_guard
    async def audit_tail(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"data": self.service.audit.tail(int(args.get("limit", 50)))}
