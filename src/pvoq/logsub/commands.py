"""Operator commands of the log subscription and of tracking.

Gateway: `logs.chunk` (what the manager runs over SSH as `logs chunk INODE
OFFSET HEAD BYTES LINES`): the whole lines of its mail_logs after a
position, across rollovers (`reader.read_chunk`), base64 in JSON.
Manager: `logsub.status` (each gateway: last pull, last line, lines, last
error), `logsub.pull` (one round now) and `track` (`tracking.track`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvoq.admin.protocol import CommandError
from pvoq.admin.registry import CommandSet, command
from pvoq.logsub.reader import Position, parse_head, read_chunk
from pvoq.logsub.wire import encode_chunk

if TYPE_CHECKING:
    from pvoq.logsub.subscriber import LogSubscription

MAX_CHUNK_BYTES = 64 * 1024 * 1024
MAX_CHUNK_LINES = 1_000_000


def chunk_args(args: dict[str, Any]) -> tuple[Position, int, int]:
    """The position and limits `logs.chunk` is asked for: keyword arguments, or the SSH
    command's words (`argv`: INODE OFFSET HEAD BYTES LINES); `CommandError` naming a bad one."""
    argv = args.get("argv")
    if argv is not None:
        names = ("inode", "offset", "head", "max_bytes", "max_lines")
        if not isinstance(argv, list) or len(argv) != len(names):
            raise CommandError("usage: logs chunk INODE OFFSET HEAD BYTES LINES")
        args = dict(zip(names, argv, strict=True))

    def integer(name: str, low: int, high: int) -> int:
        raw = args.get(name)
        if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 19:
            raw = int(raw)
        if not isinstance(raw, int) or isinstance(raw, bool) or not low <= raw <= high:
            raise CommandError(f"{name}: an integer from {low} to {high}")
        return raw

    try:
        head = parse_head(str(args.get("head") or "-"))
    except ValueError as exc:
        raise CommandError(f"head: {exc}") from None
    position = Position(integer("inode", 0, 2**63 - 1), integer("offset", 0, 2**63 - 1), head)
    return (position, integer("max_bytes", 1, MAX_CHUNK_BYTES),
            integer("max_lines", 1, MAX_CHUNK_LINES))


class LogChunkCommands(CommandSet):
    """The gateway's `logs.chunk`; *logs_dir* gives the running logs directory."""

    def __init__(self, logs_dir: Callable[[], Path]) -> None:
        self.logs_dir = logs_dir

    @command("logs.chunk")
    async def chunk(self, args: dict[str, Any]) -> dict[str, Any]:
        position, max_bytes, max_lines = chunk_args(args)
        found = await asyncio.to_thread(read_chunk, self.logs_dir(), position,
                                        max_bytes=max_bytes, max_lines=max_lines)
        return {"data": encode_chunk(found)}


class LogSubscriptionCommands(CommandSet):
    """The manager's `logsub.status`, `logsub.pull` and `track`."""

    def __init__(self, subscription: LogSubscription) -> None:
        self.subscription = subscription

    @command("logsub.status")
    async def status(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"data": await asyncio.to_thread(self.subscription.status)}

    @command("logsub.pull")
    async def pull(self, args: dict[str, Any]) -> dict[str, Any]:
        """One round now (each gateway once, and the manager's own log)."""
        if not self.subscription.config().log_subscription.enabled:
            raise CommandError("the log subscription is disabled (<log_subscription><enabled>)")
        more = await self.subscription.pull_all()
        status = await asyncio.to_thread(self.subscription.status)
        return {"data": {**status, "more": more}}

    @command("track")
    async def track(self, args: dict[str, Any]) -> dict[str, Any]:
        from pvoq.logsub.tracking import Query, track  # the manager's: not in a gateway

        query = Query.from_args(args)
        journeys = await asyncio.to_thread(track, self.subscription.index, query)
        return {"data": {"journeys": journeys}}
