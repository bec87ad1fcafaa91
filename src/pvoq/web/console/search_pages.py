"""*Quarantine search* (manager): the search form, its results, saved searches, bulk actions.

- `GET /quarantine/search`: every filter of the REST API's search, with the
  same names and the same strict parser (`web.params`: an unknown parameter
  is refused, not ignored), sort, and paging by bounded offset; the total is
  the API's `meta.totalCount`. A custom role sees and searches only the
  quarantines granted to it (`QuarantineService.search` enforces it).
- Saved searches (`QuarantineService.save_search` and friends): listed,
  loaded into the form (`?saved=<name>`), saved and deleted.
- Bulk actions: `POST /quarantine/bulk` is the dry run (nothing changes: the
  page lists what would happen), `POST /quarantine/bulk/confirm` runs that
  plan (`bulk_jobs`), `GET /quarantine/bulk/jobs/<id>` shows its progress
  (`/progress` as JSON, polled by `static/bulk.js`).

Every POST carries the CSRF token (`verify_csrf`); every form field name is
checked as strictly as the query's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from pvoq.errors import Invalid, NotFound
from pvoq.quarantine import roles
from pvoq.quarantine.search import SearchError, describe_total
from pvoq.quarantine.service import copy_address_fault
from pvoq.quarantine.settings import delay_seconds
from pvoq.web.console import message_pages
from pvoq.web.console.auth import User, require
from pvoq.web.console.bulk_jobs import ACTIONS, BulkJobs, Plan, new_plan_id
from pvoq.web.console.csrf import FIELD, verify_csrf
from pvoq.web.console.message_views import VALUES, quarantine_names, row, service_of
from pvoq.web.console.templating import NavItem, add_nav, render
from pvoq.web.params import (
    FILTER_BY,
    MAX_LIMIT,
    MAX_OFFSET,
    ORDER_BY,
    SEARCH_PARAMS,
    ParamError,
    SearchParams,
    check_names,
    params_of,
    parse_search,
    text,
)

router = APIRouter()
router.include_router(message_pages.router)
add_nav(NavItem("Quarantines", "Quarantine Search", "/quarantine/search",
                roles=("manager", "gateway"),
                permission="search"))

PAGE_PARAMS = SEARCH_PARAMS | {"saved"}
MAX_SEARCH_FIELD = 16_000          # the search carried in a form, URL-encoded
MAX_NAME = 64                      # a saved search's name
DRY_RUN_SHOWN = 100                # messages a dry run lists (the count is of all)
DELAYS = ("8h", "24h", "48h", "1w")
OPERATORS = [op for op in FILTER_BY if op not in ("starts_with", "does_not_start_with")]
SORTS = [name for name in ORDER_BY if name != "scheduled_exit"]
User_ = Annotated[User, Depends(require("search"))]


def _joined(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The form's quarantine checkboxes (one `quarantines` each) as one comma list."""
    names = [v for k, v in items if k == "quarantines" and v]
    rest = [(k, v) for k, v in items if k != "quarantines"]
    return rest + ([("quarantines", ",".join(names))] if names else [])


def _search_of(value: str | None) -> SearchParams:
    """The search a form carries URL-encoded in its `search` field."""
    if value is not None and len(value) > MAX_SEARCH_FIELD:
        raise ParamError("search", f"search is longer than {MAX_SEARCH_FIELD} characters")
    try:
        items = parse_qsl(value or "", max_num_fields=len(SEARCH_PARAMS) + 1)
    except ValueError as exc:
        raise ParamError("search", f"search: {exc}") from None
    return parse_search(items)


async def _form(request: Request, allowed: set[str]) -> dict[str, Any]:
    form = await request.form()
    return check_names([(k, v) for k, v in form.multi_items() if k != FIELD], allowed)


def _page_link(given: dict[str, str], **changes: Any) -> str:
    values = {**given, **{k: str(v) for k, v in changes.items()}}
    return "/quarantine/search?" + urlencode({k: v for k, v in values.items() if v != ""})


@router.get("/quarantine/search", include_in_schema=False)
async def search_page(request: Request, user: User_) -> Response:
    service = service_of(request)
    caller = user.caller
    saved = service.saved_searches(caller)
    items = _joined(request.query_params.multi_items())
    try:
        p = check_names(items, PAGE_PARAMS)
        name = text(p, "saved", MAX_NAME)
        p.pop("saved", None)
        if name is not None:
            if name not in saved:
                raise ParamError("saved", f"no saved search named {name!r}")
            return RedirectResponse(_page_link(params_of(saved[name])), status_code=303)
        parsed = parse_search(p)
    except SearchError as exc:
        return _render_search(request, user, saved, {k: str(v) for k, v in items},
                              error=str(exc), status_code=400)
    rows, total, exact = service.search_counted(caller, parsed.query)
    return _render_search(request, user, saved, parsed.given, parsed=parsed,
                          rows=[row(m) for m in rows], total=total, exact=exact)


def _render_search(request: Request, user: User, saved: dict[str, Any], given: dict[str, str],
                   *, parsed: SearchParams | None = None, rows: list[Any] | None = None,
                   total: int | None = None, exact: bool = True, error: str | None = None,
                   status_code: int = 200) -> HTMLResponse:
    service = service_of(request)
    q = parsed.query if parsed is not None else None
    pages: dict[str, str] = {}
    if q is not None and total is not None:
        if q.offset > 0:
            pages["previous"] = _page_link(given, offset=max(0, q.offset - q.limit))
            pages["first"] = _page_link(given, offset=0)
        more = q.offset + q.limit < total or (not exact and len(rows or []) == q.limit)
        if more and q.offset + q.limit <= MAX_OFFSET:
            pages["next"] = _page_link(given, offset=q.offset + q.limit)
    sort_links = {}
    for key in SORTS:
        current = given.get("orderBy", "received") == key
        direction = "asc" if current and given.get("orderDir", "desc") == "desc" else "desc"
        sort_links[key] = _page_link(given, orderBy=key, orderDir=direction, offset=0)
    chosen = set((given.get("quarantines") or "").split(","))
    return render(request, "manager/search.html", status_code=status_code, user=user,
                  given=given, query=q, rows=rows or [], total=total, error=error,
                  total_text=describe_total(total, exact) if total is not None else "",
                  exact=exact,
                  saved=sorted(saved), pages=pages, sort_links=sort_links,
                  quarantines=quarantine_names(service, user.caller), chosen=chosen,
                  operators=OPERATORS, sorts=SORTS, limits=(20, 50, 100, MAX_LIMIT),
                  delays=DELAYS, search_field=urlencode(given), **VALUES)


@router.post("/quarantine/search/saved", include_in_schema=False,
             dependencies=[Depends(verify_csrf)])
async def save_search(request: Request, user: User_) -> Response:
    service = service_of(request)
    form = await _form(request, {"name", "search", "delete"})
    name = (text(form, "name", MAX_NAME) or "").strip()
    if not name:
        raise Invalid("name: a saved search needs a name")
    if form.get("delete"):
        if not service.delete_search(user.caller, name):
            raise NotFound(f"no saved search named {name!r}")
        return RedirectResponse("/quarantine/search", status_code=303)
    parsed = _search_of(text(form, "search", MAX_SEARCH_FIELD))
    service.save_search(user.caller, name, replace(parsed.query, offset=0))
    return RedirectResponse(_page_link(parsed.given), status_code=303)


# -- bulk actions ---------------------------------------------------------------------------

def _jobs(request: Request) -> BulkJobs:
    state = request.app.state
    if not hasattr(state, "bulk_jobs"):
        state.bulk_jobs = BulkJobs()
    jobs = state.bulk_jobs
    assert isinstance(jobs, BulkJobs)
    return jobs


BULK_FIELDS = {"search", "action", "quarantine", "delay", "target", "address"}


@router.post("/quarantine/bulk", include_in_schema=False, dependencies=[Depends(verify_csrf)])
async def bulk_dry_run(request: Request, user: User_) -> Response:
    """The dry run: what the action would do, and nothing done."""
    service = service_of(request)
    form = await _form(request, BULK_FIELDS)
    parsed = _search_of(text(form, "search", MAX_SEARCH_FIELD))
    action = text(form, "action", 20) or ""
    if action not in ACTIONS:
        raise ParamError("action", f"action must be one of {', '.join(ACTIONS)}")
    roles.check(user.caller, action)
    plan = Plan(new_plan_id(), user.name, action, [],
                quarantine=text(form, "quarantine", 64), delay=text(form, "delay", 8),
                target=text(form, "target", 64), address=text(form, "address", 320))
    _check_options(plan)
    summary = service.bulk(user.caller, parsed.query, action, dry_run=True,
                           quarantine=plan.quarantine, delay=plan.delay, target=plan.target,
                           address=plan.address)
    plan.mids = [int(m) for m in summary["mids"]]
    shown: list[Any] = []
    if plan.mids:
        first = replace(parsed.query, order_by="received", order_dir="asc",
                        limit=DRY_RUN_SHOWN, offset=0, with_total=False)
        shown = [row(m) for m in service.search(user.caller, first)[0]]
    _jobs(request).add_plan(plan)
    return render(request, "manager/bulk_dry_run.html", user=user, plan=plan, rows=shown,
                  count=len(plan.mids), more=max(0, len(plan.mids) - len(shown)),
                  back=_page_link(parsed.given), **VALUES)


def _check_options(plan: Plan) -> None:
    """The action's own options, refused before the dry run (naming the field)."""
    if plan.action == "delay":
        delay_seconds(plan.delay or "")
    elif plan.action == "move" and (not plan.quarantine or not plan.target):
        raise ParamError("target", "move needs the quarantine to move from and the target")
    elif plan.action == "copy":
        fault = copy_address_fault(plan.address or "")
        if fault is not None:
            raise ParamError("address", f"address: {fault}")


@router.post("/quarantine/bulk/confirm", include_in_schema=False,
             dependencies=[Depends(verify_csrf)])
async def bulk_confirm(request: Request, user: User_) -> Response:
    form = await _form(request, {"plan"})
    jobs = _jobs(request)
    plan = jobs.take_plan(text(form, "plan", 64) or "", user.name)
    roles.check(user.caller, plan.action)
    job = jobs.start(plan, service_of(request), user.caller)
    return RedirectResponse(f"/quarantine/bulk/jobs/{job.id}", status_code=303)


@router.get("/quarantine/bulk/jobs/{job_id}", include_in_schema=False)
async def bulk_job(request: Request, job_id: str, user: User_) -> Response:
    job = _jobs(request).job(job_id, user.name)
    return render(request, "manager/bulk_job.html", user=user, job=job,
                  progress=job.progress())


@router.get("/quarantine/bulk/jobs/{job_id}/progress", include_in_schema=False)
async def bulk_progress(request: Request, job_id: str, user: User_) -> Response:
    return JSONResponse(_jobs(request).job(job_id, user.name).progress())
