"""How the console's quarantine pages show a message: plain values for the templates.

Shared by the search, bulk and message pages. Every string here that came in
with mail (sender, recipients, subject, reasons, header values, file names)
stays a plain `str`: the templates' autoescape escapes it, and nothing here
ever marks it safe. Control characters are shown as `\\xNN` so that a header
cannot hide text or reach a terminal through a copy and paste.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import HTTPException, Request
from sqlalchemy import select

from pvoq.quarantine.roles import Caller
from pvoq.quarantine.schema import quarantines as quarantine_table
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.store import HELD

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def service_of(request: Request) -> QuarantineService:
    """The quarantine service the pages act on: the manager's, or a gateway's local
    quarantines. A gateway that keeps none (centralized mode) answers 404 saying so."""
    ctx = request.app.state.ctx
    service = ctx.quarantine_service()
    if service is None:
        raise HTTPException(404, f"{ctx.hostname} keeps no local quarantines: it is in "
                                 "centralized mode, and the mail it catches is held on the "
                                 "manager (search there). `pvoq cli pvo disable` switches "
                                 "it to local quarantines.")
    assert isinstance(service, QuarantineService)
    return service


def visible_text(value: object, most: int = 2000) -> str:
    """*value* as text to show: control and bidirectional characters made visible, cut
    at *most* characters."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", str(value))
    return text if len(text) <= most else text[:most] + "…"


def when(epoch: float | None) -> str:
    """Epoch seconds as local date and time (the last representable date beyond it)."""
    if epoch is None:
        return ""
    try:
        return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):
        return "9999-12-31 23:59:59" if epoch > 0 else "0001-01-01 00:00:00"


def size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


@dataclass(frozen=True)
class Held:
    """One quarantine's hold on a message."""

    quarantine: str
    reason: str
    state: str
    scheduled_exit: str


@dataclass(frozen=True)
class Row:
    """A message as one line of the search results (or of a dry run)."""

    mid: int
    received: str
    sender: str
    recipients: list[str]
    subject: str
    size: str
    gateway: str
    gateway_mid: str
    held: list[Held]
    exit: str


def row(m: dict[str, Any]) -> Row:
    """A store record (`QuarantineStore.search`/`get`) as a `Row`."""
    holds = [Held(visible_text(q["quarantine"]), visible_text(q.get("reason") or ""),
                  str(q["state"]), when(q.get("scheduled_exit")))
             for q in m["quarantines"]]
    exits = [q["scheduled_exit"] for q in m["quarantines"]
             if q["state"] == HELD and q.get("scheduled_exit")]
    origin = m.get("origin_host") or ""
    if m.get("origin_ip"):
        origin = f"{origin} ({m['origin_ip']})" if origin else str(m["origin_ip"])
    return Row(mid=int(m["id"]), received=when(m["received_at"]),
               sender=visible_text(m["sender"]),
               recipients=[visible_text(r["address"]) for r in m["recipients"]],
               subject=visible_text(m["subject"] or ""), size=size(m.get("size")),
               gateway=visible_text(origin), gateway_mid=str(m.get("origin_mid") or ""),
               held=holds, exit=when(min(exits)) if exits else "")


def quarantine_names(service: QuarantineService, caller: Caller) -> list[str]:
    """The quarantines *caller* may search (a custom role: only those granted)."""
    with service.store.engine.connect() as conn:
        names = [str(n) for (n,) in conn.execute(
            select(quarantine_table.c.name).where(quarantine_table.c.deleted.is_(False))
            .order_by(quarantine_table.c.name))]
    if caller.quarantines is not None:
        names = [n for n in names if n in caller.quarantines]
    return names


VALUES: dict[str, Any] = {"when": when, "size": size}
