"""The manager's administration pages: PVO Quarantines, Centralized Services, Audit.

- `/quarantines`: every quarantine with what it holds and its settings;
  `/quarantines/new`, `/quarantines/edit?name=`, `/quarantines/delete?name=`
  create, change and delete custom quarantines. A change is made in the
  configuration file and reloaded (`quarantine.add|edit|remove`, see
  `quarantine.definitions`), so the page and the XML never disagree.
- `/centralized/pvo`: the PVO service's interface and port, the gateways
  with their SSH status (`gateway.list`), add a gateway with a one-time token
  (`gateway.add`), test a connection (`gateway.test`).
- `/audit`: the audit trail, filtered and paged (`audit.search`), with the
  chain's verification state (`audit.verify`).

Every page is for administrators (`configure`, `audit`); everything goes
through `ctx.call`, the operator commands the CLI runs. Strings that came
from a gateway or from mail are shown escaped and with control characters
made visible (`shown`).
"""

from __future__ import annotations

import calendar
import json
import re
import time
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pvoq.errors import OperatorError, http_status
from pvoq.web.console.auth import User, require
from pvoq.web.console.csrf import verify_csrf
from pvoq.web.console.templating import NavItem, add_nav, render

router = APIRouter()

# The vendor's names (Cisco SMA): Policy, Virus and Outbreak Quarantines.
add_nav(NavItem("Quarantines", "Policy, Virus and Outbreak Quarantines", "/quarantines",
                roles=("manager",), permission="configure"))
add_nav(NavItem("Centralized Services", "Policy, Virus and Outbreak Quarantines",
                "/centralized/pvo", roles=("manager",), permission="configure"))
add_nav(NavItem("Administration", "Audit", "/audit", roles=("manager",), permission="audit"))

Admin = Annotated[User, Depends(require("configure"))]
Auditor = Annotated[User, Depends(require("audit"))]

FORM_TEXT_MAX = 256
FORM_FIELDS = ("name", "retention", "retention_unit", "default_action", "free_up_space",
               "subject_tag", "subject_position", "x_header", "strip_attachments")
CHECKBOXES = ("free_up_space", "strip_attachments")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text: Any, limit: int = 500) -> str:
    """*text* for a page: control and bidirectional-override characters made visible
    (`\\x1b`), cut at *limit* characters. Autoescape does the HTML."""
    value = "" if text is None else str(text)
    value = _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", value)
    return value if len(value) <= limit else value[:limit] + "…"


def when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def size(n: int) -> str:
    for unit, factor in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


def period(seconds: float) -> str:
    for unit, factor in (("day", 86400), ("hour", 3600), ("minute", 60)):
        amount = seconds / factor
        if amount >= 1 and float(amount).is_integer():
            return f"{amount:g} {unit}{'' if amount == 1 else 's'}"
    return f"{seconds:g} seconds"


async def call(request: Request, name: str, args: dict[str, Any], user: User
               ) -> dict[str, Any]:
    result: dict[str, Any] = await request.app.state.ctx.call(name, args, user)
    return result


# -- PVO Quarantines ------------------------------------------------------------------
@router.get("/quarantines", include_in_schema=False)
async def quarantines(request: Request, user: Admin,
                      done: Annotated[str | None, Query(max_length=16)] = None,
                      name: Annotated[str | None, Query(max_length=FORM_TEXT_MAX)] = None
                      ) -> HTMLResponse:
    data = (await call(request, "quarantine.overview", {}, user))["data"]
    rows = [{**r, "shown_name": shown(r["name"]), "retention": period(r["retention_s"]),
             "size": size(int(r["bytes"])), "oldest_at": when(r["oldest"])}
            for r in data["quarantines"]]
    names = {r["name"] for r in rows}
    notice = None
    if done in ("add", "edit") and name in names:
        notice = f"Quarantine {shown(name)} {'created' if done == 'add' else 'changed'}; " \
                 "the configuration file was written and reloaded."
    elif done == "remove" and name is not None and name not in names:
        notice = f"Quarantine {shown(name)} deleted; the configuration file was written " \
                 "and reloaded."
    return render(request, "manager/quarantines.html", user=user, rows=rows, notice=notice,
                  quota=size(int(data["quota_bytes"])) if data["quota_bytes"] else "",
                  used=size(int(data["used_bytes"])))


async def _definitions(request: Request, user: User) -> dict[str, Any]:
    data: dict[str, Any] = (await call(request, "quarantine.definitions", {}, user))["data"]
    return data


def _form_page(request: Request, user: User, *, op: str, values: dict[str, Any],
               version: str, errors: dict[str, str] | None = None, general: str = "",
               status_code: int = 200) -> HTMLResponse:
    return render(request, "manager/quarantines_form.html", user=user, op=op, values=values,
                  version=version, errors=errors or {}, general=general,
                  status_code=status_code)


@router.get("/quarantines/new", include_in_schema=False)
async def new_quarantine(request: Request, user: Admin) -> HTMLResponse:
    data = await _definitions(request, user)
    blank = {"name": "", "retention": "10", "retention_unit": "days",
             "default_action": "delete", "free_up_space": False, "subject_tag": "",
             "subject_position": "prepend", "x_header": "", "strip_attachments": False}
    return _form_page(request, user, op="add", values=blank, version=data["version"])


@router.get("/quarantines/edit", include_in_schema=False)
async def edit_quarantine(request: Request, user: Admin,
                          name: Annotated[str, Query(max_length=FORM_TEXT_MAX)]
                          ) -> HTMLResponse:
    data = await _definitions(request, user)
    found = next((q for q in data["quarantines"] if q["name"] == name), None)
    if found is None:
        raise HTTPException(404, f"No quarantine named {shown(name, 80)!r}.")
    return _form_page(request, user, op="edit", values=found["form"], version=data["version"])


def _posted(form: Any) -> tuple[dict[str, Any], str]:
    """The quarantine fields of a posted form (checkboxes: present or not) and its
    version; a text longer than `FORM_TEXT_MAX` is refused naming its field."""
    values: dict[str, Any] = {}
    for key in FORM_FIELDS:
        if key in CHECKBOXES:
            values[key] = form.get(key) is not None
            continue
        raw = form.get(key)
        text = raw if isinstance(raw, str) else ""
        if len(text) > FORM_TEXT_MAX:
            raise _Refused({key: f"at most {FORM_TEXT_MAX} characters"})
        values[key] = text
    version = form.get("version")
    return values, version if isinstance(version, str) else ""


class _Refused(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


async def _change(request: Request, user: User, op: str) -> Response:
    form = await request.form()
    try:
        values, version = _posted(form)
    except _Refused as exc:
        values = {k: form.get(k) is not None if k in CHECKBOXES else
                  str(form.get(k) or "")[:FORM_TEXT_MAX] for k in FORM_FIELDS}
        return _form_page(request, user, op=op, values=values, version="",
                          errors=exc.errors, status_code=400)
    args = dict(values, version=version) if version else dict(values)
    try:
        await call(request, f"quarantine.{op}", args, user)
    except OperatorError as exc:
        field = getattr(exc, "field", None)
        message = str(getattr(exc, "message", exc))
        errors = {field: message} if field in FORM_FIELDS else {}
        general = "" if errors else str(exc)
        if field == "version" or "changed since" in message:
            version = (await _definitions(request, user))["version"]
            general, errors = message, {}
        return _form_page(request, user, op=op, values=values, version=version,
                          errors=errors, general=general,
                          status_code=http_status(exc) or 400)
    query = urlencode({"done": op, "name": values["name"]})
    return RedirectResponse(f"/quarantines?{query}", status_code=303)


@router.post("/quarantines/new", include_in_schema=False,
             dependencies=[Depends(verify_csrf)])
async def create_quarantine(request: Request, user: Admin) -> Response:
    return await _change(request, user, "add")


@router.post("/quarantines/edit", include_in_schema=False,
             dependencies=[Depends(verify_csrf)])
async def change_quarantine(request: Request, user: Admin) -> Response:
    return await _change(request, user, "edit")


@router.get("/quarantines/delete", include_in_schema=False)
async def confirm_delete(request: Request, user: Admin,
                         name: Annotated[str, Query(max_length=FORM_TEXT_MAX)]
                         ) -> HTMLResponse:
    data = (await call(request, "quarantine.overview", {}, user))["data"]
    found = next((q for q in data["quarantines"] if q["name"] == name), None)
    if found is None:
        raise HTTPException(404, f"No quarantine named {shown(name, 80)!r}.")
    version = (await _definitions(request, user))["version"]
    return render(request, "manager/quarantines_delete.html", user=user, q=found,
                  shown_name=shown(name), version=version, error="")


@router.post("/quarantines/delete", include_in_schema=False,
             dependencies=[Depends(verify_csrf)])
async def delete_quarantine(request: Request, user: Admin) -> Response:
    form = await request.form()
    name, version = form.get("name"), form.get("version")
    if not isinstance(name, str) or len(name) > FORM_TEXT_MAX:
        raise HTTPException(400, "name: missing or too long")
    args: dict[str, Any] = {"name": name}
    if isinstance(version, str) and version:
        args["version"] = version
    try:
        await call(request, "quarantine.remove", args, user)
    except OperatorError as exc:
        data = (await call(request, "quarantine.overview", {}, user))["data"]
        found = next((q for q in data["quarantines"] if q["name"] == name), None)
        if found is None:
            raise
        version = (await _definitions(request, user))["version"]
        return render(request, "manager/quarantines_delete.html", user=user, q=found,
                      shown_name=shown(name), version=version, error=str(exc),
                      status_code=http_status(exc) or 400)
    return RedirectResponse(f"/quarantines?{urlencode({'done': 'remove', 'name': name})}",
                            status_code=303)


# -- Centralized Services > PVO Quarantines ------------------------------------------------
def _status(row: dict[str, Any]) -> tuple[str, str]:
    """(status word, CSS class) of a `gateway.list` row."""
    if row.get("fault"):
        return "FAULT", "error"
    if row.get("fingerprint") is None:
        return "Configured address (not added over SSH)", ""
    if row.get("looked_up") is None:
        return "Added (not looked up yet)", ""
    return "OK", "ok"


async def _centralized(request: Request, user: User, *, result: str = "",
                       error: str = "", status_code: int = 200,
                       form: dict[str, Any] | None = None) -> HTMLResponse:
    cfg = request.app.state.ctx.config()
    cpq = cfg.cpq_listener
    interface = cfg.interface(cpq.interface_name) if cpq is not None else None
    service = {"enabled": cfg.pvo.enabled,
               "interface": cpq.interface_name if cpq else "",
               "address": interface.ip if interface else "",
               "port": cpq.port if cpq else None}
    listed = (await call(request, "gateway.list", {}, user))["data"]["gateways"]
    gateways = []
    for row in listed:
        word, css = _status(row)
        gateways.append({key: shown(value) if isinstance(value, str) else value
                         for key, value in row.items()} | {"status": word, "css": css})
    records = [{"name": g.hostname, "address": g.address, "ssh_port": g.ssh_port or 22}
               for g in cfg.pvo.gateways]
    return render(request, "manager/centralized.html", user=user, service=service,
                  gateways=gateways, records=records, result=shown(result, 2000),
                  error=shown(error, 2000), form=form or {}, status_code=status_code)


@router.get("/centralized/pvo", include_in_schema=False)
async def centralized(request: Request, user: Admin) -> HTMLResponse:
    return await _centralized(request, user)


def _field(form: Any, key: str, limit: int = FORM_TEXT_MAX) -> str:
    raw = form.get(key)
    text = raw.strip() if isinstance(raw, str) else ""
    if len(text) > limit:
        raise HTTPException(400, f"{key}: at most {limit} characters")
    return text


@router.post("/centralized/pvo/add", include_in_schema=False,
             dependencies=[Depends(verify_csrf)])
async def add_gateway(request: Request, user: Admin) -> HTMLResponse:
    form = await request.form()
    values = {key: _field(form, key) for key in ("name", "host", "ssh_port", "token",
                                                 "fingerprint")}
    replace = form.get("replace") is not None
    if values["ssh_port"] and not (values["ssh_port"].isascii()
                                   and values["ssh_port"].isdigit()
                                   and 1 <= int(values["ssh_port"]) <= 65535):
        return await _centralized(request, user, error="ssh_port: not a port number "
                                  "(from 1 to 65535)", status_code=400, form=values)
    args: dict[str, Any] = {"name": values["name"], "replace": replace}
    for key in ("host", "token", "fingerprint"):
        if values[key]:
            args[key] = values[key]
    if values["ssh_port"]:
        args["ssh_port"] = int(values["ssh_port"])
    try:
        done = await call(request, "gateway.add", args, user)
    except OperatorError as exc:
        return await _centralized(request, user, error=str(exc),
                                  status_code=http_status(exc) or 400, form=values)
    return await _centralized(request, user, result=str(done.get("text", "")))


@router.post("/centralized/pvo/test", include_in_schema=False,
             dependencies=[Depends(verify_csrf)])
async def test_gateway(request: Request, user: Admin) -> HTMLResponse:
    form = await request.form()
    name = _field(form, "name")
    try:
        done = await call(request, "gateway.test", {"name": name}, user)
    except OperatorError as exc:
        return await _centralized(request, user, error=str(exc),
                                  status_code=http_status(exc) or 400)
    return await _centralized(request, user, result=str(done.get("text", "")))


# -- Audit ---------------------------------------------------------------------------------
AUDIT_FILTERS = ("actor", "action", "mid", "since", "until", "before", "limit")
AUDIT_ACTIONS = ("search", "view", "release", "delete", "delay", "move", "copy", "split",
                 "bulk", "bulk-dry-run", "save-search", "quarantine-add", "quarantine-edit",
                 "quarantine-remove")


def utc_epoch(field: str, text: str) -> str:
    """A `datetime-local` value read as UTC ("2026-11-30T15:04"), as epoch seconds text."""
    if not text:
        return ""
    for layout in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return f"{calendar.timegm(time.strptime(text, layout)):d}"
        except ValueError:
            continue
    raise HTTPException(400, f"{field}: not a date and time (YYYY-MM-DDTHH:MM, UTC): "
                             f"{shown(text, 40)!r}")


@router.get("/audit", include_in_schema=False)
async def audit(request: Request, user: Auditor) -> HTMLResponse:
    unknown = sorted(set(request.query_params) - set(AUDIT_FILTERS))
    if unknown:
        raise HTTPException(400, f"{shown(unknown[0], 40)}: unknown filter; the filters "
                                 f"are {', '.join(AUDIT_FILTERS)}")
    given = {k: request.query_params.get(k, "").strip()[:FORM_TEXT_MAX + 1]
             for k in AUDIT_FILTERS}
    args: dict[str, Any] = {k: given[k] for k in ("actor", "action", "mid", "before", "limit")
                            if given[k]}
    for key in ("since", "until"):
        if given[key]:
            args[key] = utc_epoch(key, given[key])
    page = (await call(request, "audit.search", args, user))["data"]
    try:
        verified = await call(request, "audit.verify", {}, user)
        chain = {"ok": True, "text": str(verified.get("text", ""))}
    except OperatorError as exc:
        chain = {"ok": False, "text": str(exc)}
    records = [{"seq": r["seq"], "at": when(r["at"]), "actor": shown(r["actor"]),
                "origin": shown(r["origin"]), "action": shown(r["action"]),
                "detail": shown(json.dumps(r["detail"], sort_keys=True,
                                           ensure_ascii=False), 400)}
               for r in page["records"]]
    kept = {k: v for k, v in given.items() if v and k != "before"}
    older = (f"/audit?{urlencode({**kept, 'before': page['next']})}"
             if page["next"] is not None else None)
    newest = f"/audit?{urlencode(kept)}" if given["before"] else None
    return render(request, "manager/audit.html", user=user, records=records, chain=chain,
                  filters=given, actions=AUDIT_ACTIONS, older=older, newest=newest)
