"""The gateway's pages: *Security Services > PVO Quarantines* with the **Enable** button, and
*Security Services > Message Filters and Outbreak Rules* (what `pipeline show` gives).

The Enable button is enabled only when the readiness check (`pvo.check`, the
CLI's `pvo check`) passes; otherwise it is greyed and the page says why, in
the check's own words. It posts (CSRF) to `/services/pvo/enable`, which runs
the operator command `pvo.enable`; a gateway without that command says so.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from pvoq.web.console.auth import User, page_user, require
from pvoq.web.console.csrf import verify_csrf
from pvoq.web.console.pages import Outcome, run
from pvoq.web.console.templating import render

router = APIRouter()


async def _pvo_page(request: Request, user: User, result: Outcome | None = None,
                    status_code: int = 200) -> HTMLResponse:
    config = request.app.state.ctx.config()
    check = await run(request, user, "pvo.check")
    mode = await run(request, user, "pvo.status")
    managers: list[dict[str, Any]] = [
        {"hostname": m.hostname or "-", "address": m.address, "port": m.port}
        for m in config.pvo.all_managers]
    return render(request, "gateway/pvo.html", user=user, check=check, pvo=config.pvo,
                  managers=managers, result=result, status_code=status_code,
                  mode=mode.data.get("description") if mode.ok else None)


@router.get("/services/pvo", include_in_schema=False)
async def pvo(request: Request, user: Annotated[User, Depends(page_user)]) -> HTMLResponse:
    return await _pvo_page(request, user)


@router.post("/services/pvo/enable", include_in_schema=False,
             dependencies=[Depends(verify_csrf)])
async def enable(request: Request,
                 user: Annotated[User, Depends(require("configure"))]) -> HTMLResponse:
    result = await run(request, user, "pvo.enable")
    if result.missing:
        result.text = ("This gateway cannot enable centralized PVO quarantines from the "
                       "console: it has no pvo.enable command (the check above still "
                       "says whether the manager is ready).")
    return await _pvo_page(request, user, result, 200 if result.ok else 409)


@router.get("/services/pipeline", include_in_schema=False)
async def pipeline(request: Request,
                   user: Annotated[User, Depends(page_user)]) -> HTMLResponse:
    shown = await run(request, user, "pipeline.show")
    scan = request.app.state.ctx.config().scan
    return render(request, "gateway/pipeline.html", user=user, shown=shown, scan=scan)
