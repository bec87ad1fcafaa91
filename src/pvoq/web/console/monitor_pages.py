"""*Monitor > Delivery Status* (both roles) and *Network > Listeners* (suspend, resume, the
system's Online/Offline state).

Every value comes from the appliance's own operator commands through
`ctx.call` as the logged-in user (`status`, `tophosts`, `hoststatus`,
`suspendlisteners`, `resumelisteners`, `suspend`, `resume`): the same role
check as the CLI, so a read-only user sees the state and may change none of it.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse

from pvoq.web.console.auth import User, page_user
from pvoq.web.console.csrf import verify_csrf
from pvoq.web.console.pages import bounded_int, bounded_text, run
from pvoq.web.console.templating import render

router = APIRouter()
MAX_HOSTS_SHOWN = 50
SORTS = ("active_rcpts", "conn_out", "deliv_rcpts", "soft_bounces", "hard_bounces")
# what the page shows of `hoststatus` (an older appliance may not give every field)
HOST_FIELDS = dict.fromkeys(
    ("down", "delivery_suspended", "active_recipients", "unattempted_recipients",
     "attempted_recipients", "delivered_recipients", "soft_bounced", "hard_bounced",
     "deleted_recipients", "connections", "current_outbound_connections", "oldest_message",
     "last_activity", "last_error"))


def when(epoch: Any) -> str:
    if not isinstance(epoch, int | float) or epoch <= 0:
        return "-"
    return time.strftime("%d %b %Y %H:%M:%S UTC", time.gmtime(epoch))


@router.get("/monitor/delivery", include_in_schema=False)
async def delivery(request: Request, user: Annotated[User, Depends(page_user)],
                   host: str | None = None, sort: str | None = None,
                   limit: str | None = None) -> HTMLResponse:
    host = bounded_text(host, "host")
    order = sort if sort in SORTS else None
    if sort is not None and order is None:
        raise HTTPException(400, f"sort: one of {', '.join(SORTS)}")
    shown = bounded_int(limit, "limit", low=1, high=MAX_HOSTS_SHOWN, default=10)
    status = await run(request, user, "status")
    top = await run(request, user, "tophosts", {"sort": order or "active_rcpts"})
    hosts = top.data.get("hosts", []) if top.ok else []
    names = [host] if host else [h["host"] for h in hosts[:shown]]
    details = []
    for name in names:
        one = await run(request, user, "hoststatus", {"host": name})
        details.append({**HOST_FIELDS, "peers": [], **one.data, "host": name, "ok": one.ok,
                        "text": one.text})
    return render(request, "monitor/delivery.html", user=user, status=status, top=top,
                  hosts=hosts, details=details, when=when, selected=host, sort=order)


@router.get("/network/listeners", include_in_schema=False)
async def listeners(request: Request,
                    user: Annotated[User, Depends(page_user)]) -> HTMLResponse:
    return await _listeners_page(request, user, None)


async def _listeners_page(request: Request, user: User, result: Any,
                          status_code: int = 200) -> HTMLResponse:
    status = await run(request, user, "status")
    suspended = set(status.data.get("receiving_suspended", [])) if status.ok else set()
    config = request.app.state.ctx.config()
    rows = [{"name": lst.name, "protocol": str(lst.protocol), "interface": lst.interface_name,
             "port": lst.port, "suspended": lst.name in suspended}
            for lst in config.listeners]
    return render(request, "monitor/listeners.html", user=user, status=status, rows=rows,
                  result=result, status_code=status_code)


@router.post("/network/listeners", include_in_schema=False,
             dependencies=[Depends(verify_csrf)])
async def listener_action(request: Request, user: Annotated[User, Depends(page_user)],
                          action: Annotated[str, Form(max_length=20)],
                          listener: Annotated[str, Form(max_length=255)] = "all"
                          ) -> HTMLResponse:
    commands = {"suspend": ("suspendlisteners", {"listener": listener}),
                "resume": ("resumelisteners", {"listener": listener}),
                "offline": ("suspend", {}), "online": ("resume", {})}
    if action not in commands:
        raise HTTPException(400, f"action: one of {', '.join(commands)}")
    name, args = commands[action]
    result = await run(request, user, name, args)
    return await _listeners_page(request, user, result, 200 if result.ok else 400)
