"""*System > Doctor* (both roles, administrators): the report of `pvoq doctor`, on request.

`GET /system/doctor` shows the page and a "Run checks" button; `POST
/system/doctor` (CSRF) runs `pvoq.doctor.check_all` against the appliance's
own running configuration, inside the event loop, bounded by `RUN_TIMEOUT_S`
and one run at a time (the checks probe the network, so no other page runs
them). One row per check: status (OK / WARN / FAIL), what it observed, and
the fix. What peers said is shown as text (autoescaped), never markup.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from pvoq.doctor.result import CheckResult, Status
from pvoq.doctor.runner import check_all, printable
from pvoq.web.console.auth import User, require
from pvoq.web.console.csrf import verify_csrf
from pvoq.web.console.templating import NavItem, add_nav, render

router = APIRouter()
RUN_TIMEOUT_S = 120.0    # pvo.check may wait for a manager's delivery timeout (60 s)
PROBE_TIMEOUT_S = 5.0    # each network probe, as `pvoq doctor`
Admin = Annotated[User, Depends(require("configure"))]

add_nav(NavItem("Administration", "Doctor", "/system/doctor", permission="configure"))


def _lock(request: Request) -> asyncio.Lock:
    lock = getattr(request.app.state, "doctor_lock", None)
    if lock is None:
        lock = request.app.state.doctor_lock = asyncio.Lock()
    return lock


async def run_doctor(request: Request) -> tuple[list[CheckResult] | None, str]:
    """The checks' results, or None and why they could not run (busy, timed out)."""
    lock = _lock(request)
    if lock.locked():
        return None, "The checks are already running (started from another page); try again " \
                     "when they finish."
    async with lock:
        config = request.app.state.ctx.config()
        try:
            results = await asyncio.wait_for(check_all(config, timeout_s=PROBE_TIMEOUT_S),
                                             RUN_TIMEOUT_S)
        except TimeoutError:
            return None, (f"The checks did not finish within {RUN_TIMEOUT_S:g} seconds; run "
                          f"pvoq doctor -c {config.path} on the appliance's host.")
    return results, ""


@router.get("/system/doctor", include_in_schema=False)
async def doctor_page(request: Request, user: Admin) -> HTMLResponse:
    return render(request, "tools/doctor.html", user=user, results=None, problem="",
                  ran_at=None, counts={}, printable=printable)


@router.post("/system/doctor", include_in_schema=False, dependencies=[Depends(verify_csrf)])
async def doctor_run(request: Request, user: Admin) -> HTMLResponse:
    results, problem = await run_doctor(request)
    counts = {str(s): sum(r.status is s for r in results or ()) for s in Status}
    return render(request, "tools/doctor.html", user=user, results=results, problem=problem,
                  ran_at=time.strftime("%d %b %Y %H:%M:%S UTC", time.gmtime()),
                  counts=counts, printable=printable, status_code=200 if results else 503)
