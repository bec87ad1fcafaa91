"""*Monitor > Message Tracking* (manager; every role that may search): each message's whole
path, gateway to manager and back, in one view.

`GET /monitor/tracking` with the filters of `pvoq cli track` (sender,
recipient, subject, Message-ID, gateway MID and gateway, manager MID, a time
range in UTC, how many) asks the manager's own `track` command through
`ctx.call` as the logged-in user: `pvoq.logsub.tracking.track` over the
tracking index, run in a worker thread. Without a filter the page only shows
the form. Every string of the answer came from mail or from a gateway's log:
shown as text (autoescaped), with control characters made visible.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from pvoq.web.console.auth import User, require
from pvoq.web.console.pages import bounded_int, bounded_text, run
from pvoq.web.console.templating import NavItem, add_nav, render

router = APIRouter()
TEXT_FILTERS = ("sender", "recipient", "subject", "message_id", "gateway")
MAX_SHOWN = 100
Searcher = Annotated[User, Depends(require("search"))]
# C0 and C1 controls, DEL, line and paragraph separators, bidi overrides and isolates
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f]")

add_nav(NavItem("Monitor", "Message Tracking", "/monitor/tracking", roles=("manager",),
                permission="search"))


def visible(value: object) -> str:
    """*value* as text with every control character shown as `\\xNN` / `\\uNNNN`."""
    def escape(m: re.Match[str]) -> str:
        code = ord(m.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return _UNSAFE.sub(escape, "" if value is None else str(value))


def when(epoch: Any) -> str:
    if not isinstance(epoch, int | float) or epoch <= 0:
        return "-"
    return time.strftime("%d %b %Y %H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}"


def parse_utc(value: str | None, name: str) -> float | None:
    """A `datetime-local` value (`2026-11-30T15:04`), read as UTC; 400 naming the field."""
    value = bounded_text(value, name, max_length=40)
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{name}: a date and time such as 2026-11-30T15:04 (UTC), "
                                 f"not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def query_args(request: Request) -> tuple[dict[str, Any], dict[str, str]]:
    """The `track` arguments the query string asks, and the form's values to show again."""
    q = request.query_params
    shown: dict[str, str] = {}
    args: dict[str, Any] = {}
    for name in TEXT_FILTERS:
        value = bounded_text(q.get(name), name, max_length=1000)
        if value:
            args[name] = shown[name] = value
    for name in ("mid", "manager_mid"):
        raw = q.get(name)
        if raw:
            args[name] = bounded_int(raw, name, low=1, high=2**63 - 1, default=0)
            shown[name] = raw
    for name in ("since", "until"):
        moment = parse_utc(q.get(name), name)
        if moment is not None:
            args[name], shown[name] = moment, q[name]
    limit = bounded_int(q.get("limit"), "limit", low=1, high=MAX_SHOWN, default=20)
    shown["limit"] = str(limit)
    return args, shown


def journey_view(journey: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of one journey (the `track` answer's fields)."""
    gw = journey.get("gateway")
    first = gw or (journey["manager"][0] if journey.get("manager") else {})
    return {"gateway": gw, "manager": journey.get("manager") or [],
            "releases": journey.get("releases") or [], "lines": journey.get("lines") or [],
            "sender": first.get("sender"), "recipients": first.get("recipients") or [],
            "subject": first.get("subject"), "message_id": first.get("message_id")}


@router.get("/monitor/tracking", include_in_schema=False)
async def tracking(request: Request, user: Searcher) -> HTMLResponse:
    args, shown = query_args(request)
    outcome = None
    journeys: list[dict[str, Any]] = []
    if args:
        outcome = await run(request, user, "track", {**args, "limit": int(shown["limit"])})
        journeys = [journey_view(j) for j in outcome.data.get("journeys", [])] \
            if outcome.ok else []
    return render(request, "tools/tracking.html", user=user, shown=shown, outcome=outcome,
                  journeys=journeys, when=when, visible=visible,
                  status_code=200 if outcome is None or outcome.ok else 400)
