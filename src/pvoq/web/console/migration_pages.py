"""*Quarantines > Migration* (manager, administrators): the migration wizard's page.

`GET /migration` shows the migration under way (per gateway and quarantine,
moved/total: `pvo.migrate.status`) and the form: mode (automatic or
custom), the custom mappings (one `LOCAL@GATEWAY=CENTRAL|new` a line), the
address to notify. `POST /migration` (CSRF) runs `pvo.migrate` with
`dry_run` for the "Dry run" button, for real for "Apply", and shows the plan
tree it printed, or the refusal (a rule, a `--map`). `POST /migration/cancel`
(CSRF, shown while one runs) runs `pvo.migrate.cancel`. Gateway and quarantine
names came from the gateways: shown as text (autoescaped), never markup.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse

from pvoq.errors import OperatorError
from pvoq.web.console.auth import User, require
from pvoq.web.console.csrf import verify_csrf
from pvoq.web.console.templating import NavItem, add_nav, render

router = APIRouter()
Admin = Annotated[User, Depends(require("configure"))]
FORM_MAX = 20_000  # characters of the mappings box
MAX_MAPS = 1000

add_nav(NavItem("Quarantines", "Migration", "/migration", roles=("manager",),
                permission="configure"))


async def _status(request: Request, user: User) -> dict[str, Any]:
    result: dict[str, Any] = await request.app.state.ctx.call("pvo.migrate.status", {}, user)
    return dict(result.get("data") or {})


@router.get("/migration", include_in_schema=False)
async def migration_page(request: Request, user: Admin) -> HTMLResponse:
    return render(request, "manager/migration.html", user=user,
                  status=await _status(request, user), tree=None, problem="", mode="automatic",
                  maps="", notify="", applied=False)


@router.post("/migration", include_in_schema=False, dependencies=[Depends(verify_csrf)])
async def migration_run(request: Request, user: Admin,
                        mode: Annotated[str, Form(max_length=16)] = "automatic",
                        maps: Annotated[str, Form(max_length=FORM_MAX)] = "",
                        notify: Annotated[str, Form(max_length=254)] = "",
                        action: Annotated[str, Form(max_length=16)] = "dry-run"
                        ) -> HTMLResponse:
    lines = [line.strip() for line in maps.splitlines() if line.strip()][:MAX_MAPS]
    dry_run = action != "apply"
    tree, problem, code = None, "", 200
    try:
        result = await request.app.state.ctx.call("pvo.migrate", {
            "mode": mode, "maps": lines, "dry_run": dry_run, "notify": notify.strip() or None},
            user)
        tree = str(result.get("text") or "")
    except OperatorError as exc:
        problem, code = str(exc), 400
    return render(request, "manager/migration.html", user=user,
                  status=await _status(request, user), tree=tree, problem=problem, mode=mode,
                  maps=maps, notify=notify, applied=not dry_run and not problem,
                  status_code=code)


@router.post("/migration/cancel", include_in_schema=False, dependencies=[Depends(verify_csrf)])
async def migration_cancel(request: Request, user: Admin) -> HTMLResponse:
    tree, problem, code = None, "", 200
    try:
        result = await request.app.state.ctx.call("pvo.migrate.cancel", {}, user)
        tree = str(result.get("text") or "")
    except OperatorError as exc:
        problem, code = str(exc), 400
    return render(request, "manager/migration.html", user=user,
                  status=await _status(request, user), tree=tree, problem=problem,
                  mode="automatic", maps="", notify="", applied=not problem, status_code=code)
