"""*Message* (manager): one quarantined message, its preview, its history, its actions.

- `GET /quarantine/messages/<mid>`: envelope, headers, the reason per
  quarantine, originating gateway and MID, scheduled exit, the message's
  audit history, the text part, the sanitized HTML preview (in a sandboxed
  iframe) and the attachment list (`web.preview`). `?remote=1` lets the
  preview load its remote images (the viewer asked).
- `GET /quarantine/messages/<mid>/preview`: the preview frame's document,
  with its own Content-Security-Policy (`preview.frame_csp`).
- `GET /quarantine/messages/<mid>/download`: the message as `.eml`, for the
  roles in `DOWNLOAD_ROLES` (admin and operator: a held message may carry
  malware, so help desk, read-only and custom roles view it but never take
  it away); audited as `download`.
- `POST /quarantine/messages/<mid>/rescan`: "Rescan (dry run)": the
  originating gateway's verdict per stage with today's rules
  (`QuarantineService.rescan`, as `pvoq cli quarantine rescan MID --dry-run`);
  nothing changes.
- `POST /quarantine/messages/<mid>/act`: release, delete, delay, move or
  send copy, through the same `QuarantineService` calls as the REST API
  (the same role checks: a custom role acts only in its granted quarantines).

Reading the message (page, frame, download) goes through
`QuarantineService.details`: the role and the quarantines are checked and
each is audited as a view.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, or_, select

from pvoq.errors import Forbidden, OperatorError
from pvoq.quarantine import roles
from pvoq.quarantine.schema import audit as audit_table
from pvoq.quarantine.service import MAX_MID, ActionResult, QuarantineService
from pvoq.quarantine.store import HELD
from pvoq.scan.message import decoded_header
from pvoq.web.console.auth import User, require
from pvoq.web.console.csrf import FIELD, verify_csrf
from pvoq.web.console.message_views import (
    VALUES,
    quarantine_names,
    row,
    service_of,
    visible_text,
    when,
)
from pvoq.web.console.templating import render
from pvoq.web.params import ParamError, check_names, text
from pvoq.web.preview import FRAME_HEADERS, FRAME_SANDBOX, frame_csp, frame_document, preview

router = APIRouter()

DOWNLOAD_ROLES = (roles.ADMIN, roles.OPERATOR)
MAX_HEADERS = 300
HISTORY_SHOWN = 50
HISTORY_SCAN = 50_000   # audit records looked through, newest first
DELAYS = ("8h", "24h", "48h", "1w")
ACTIONS = ("release", "delete", "delay", "move", "copy")
Mid = Annotated[int, Path(ge=1, le=MAX_MID)]
_FOLD = re.compile(r"\r?\n(?=[ \t])")   # a header field folded onto its next line
Viewer = Annotated[User, Depends(require("view"))]


def _remote(request: Request) -> bool:
    p = check_names(request.query_params.multi_items(), {"remote"})
    value = text(p, "remote", 1)
    if value not in (None, "0", "1"):
        raise ParamError("remote", "remote must be 0 or 1")
    return value == "1"


def _body(service: QuarantineService, record: dict[str, Any], mid: int) -> bytes | None:
    return service.store.read_body(mid) if record["state"] == HELD else None


@dataclass(frozen=True)
class Event:
    """One audit record about the message."""

    at: str
    actor: str
    origin: str
    action: str
    detail: str


def history(service: QuarantineService, mid: int, since: float) -> tuple[list[Event], bool]:
    """The newest audit records naming *mid* (from its arrival on, within the newest
    `HISTORY_SCAN` records), and whether the scan stopped short of its arrival."""
    a = audit_table.c
    patterns = [f'%"mid":{mid},%', f'%"mid":{mid}}}%', f'%"new_mid":{mid}%',
                f'%[{mid},%', f'%,{mid},%', f'%,{mid}]%', f'%[{mid}]%']
    with service.store.engine.connect() as conn:
        head = int(conn.execute(select(func.max(a.seq))).scalar() or 0)
        floor = max(0, head - HISTORY_SCAN)
        rows = conn.execute(
            select(a.at, a.actor, a.origin, a.action, a.detail)
            .where(a.seq > floor, a.at >= since - 1,
                   or_(*(a.detail.like(p) for p in patterns)))
            .order_by(a.seq.desc()).limit(HISTORY_SHOWN)).all()
        oldest_scanned = conn.execute(select(a.at).where(a.seq == floor + 1)).scalar()
    short = floor > 0 and oldest_scanned is not None and float(oldest_scanned) > since
    return [Event(when(at), visible_text(actor, 128), visible_text(origin, 128),
                  visible_text(action, 64), visible_text(detail, 300))
            for at, actor, origin, action, detail in rows], short


def _headers(body: bytes) -> list[tuple[str, str]]:
    parsed = BytesHeaderParser(policy=compat32).parsebytes(body)
    return [(visible_text(name, 200),
             visible_text(_FOLD.sub(" ", decoded_header(value)).strip()))
            for name, value in parsed.items()[:MAX_HEADERS]]


async def _page(request: Request, user: User, mid: int, *, result: ActionResult | None = None,
                status_code: int = 200, **extra: Any) -> HTMLResponse:
    service = service_of(request)
    remote = _remote(request) if request.method == "GET" else False
    record = service.details(user.caller, mid, with_body=False)
    body = _body(service, record, mid)
    view = preview(body, load_remote=remote) if body is not None else None
    events, short = history(service, mid, float(record["received_at"]))
    held = [q["quarantine"] for q in record["quarantines"] if q["state"] == HELD]
    if user.caller.quarantines is not None:
        held = [q for q in held if q in user.caller.quarantines]
    meta = record.get("meta") or {}
    return render_message(request, user, mid, record=record, view=view,
                          headers=_headers(body) if body is not None else [],
                          events=events, history_short=short, held=held,
                          remote=remote, result=result, status_code=status_code,
                          stage={q["quarantine"]: visible_text(q.get("stage") or "")
                                 for q in record["quarantines"]},
                          meta_keys=sorted(visible_text(k, 64) for k in meta)[:50], **extra)


def render_message(request: Request, user: User, mid: int, *, status_code: int,
                   **values: Any) -> HTMLResponse:
    service = service_of(request)
    return render(request, "manager/message.html", status_code=status_code, user=user,
                  mid=mid, row=row(values.pop("record")), delays=DELAYS,
                  may_download=user.role in DOWNLOAD_ROLES, sandbox=FRAME_SANDBOX,
                  targets=quarantine_names(service, user.caller), **values, **VALUES)


@router.get("/quarantine/messages/{mid}", include_in_schema=False)
async def message_page(request: Request, mid: Mid, user: Viewer) -> Response:
    return await _page(request, user, mid)


@router.get("/quarantine/messages/{mid}/preview", include_in_schema=False)
async def message_preview(request: Request, mid: Mid, user: Viewer) -> Response:
    service = service_of(request)
    remote = _remote(request)
    record = service.details(user.caller, mid, with_body=False)
    body = _body(service, record, mid)
    view = preview(body or b"", load_remote=remote)
    return HTMLResponse(frame_document(view),
                        headers={"Content-Security-Policy": frame_csp(view), **FRAME_HEADERS})


@router.get("/quarantine/messages/{mid}/download", include_in_schema=False)
async def message_download(request: Request, mid: Mid, user: Viewer) -> Response:
    check_names(request.query_params.multi_items(), ())
    if user.role not in DOWNLOAD_ROLES:
        raise Forbidden(f"Your role ({user.role}) may not download messages; "
                        f"{' and '.join(DOWNLOAD_ROLES)} may.")
    service = service_of(request)
    record = service.details(user.caller, mid, with_body=False)
    body = _body(service, record, mid)
    if body is None:
        raise Forbidden(f"MID {mid} is no longer held: its body is gone.")
    caller = user.caller
    service.audit.append(caller.actor, caller.origin, "download", {"mid": mid})
    return Response(body, media_type="message/rfc822", headers={
        "Content-Disposition": f'attachment; filename="pvoq-{mid}.eml"'})


@router.post("/quarantine/messages/{mid}/act", include_in_schema=False,
             dependencies=[Depends(verify_csrf)])
async def message_act(request: Request, mid: Mid, user: Viewer) -> Response:
    form = await request.form()
    p = check_names([(k, v) for k, v in form.multi_items() if k != FIELD],
                    {"action", "quarantine", "delay", "target", "address"})
    action = text(p, "action", 20) or ""
    if action not in ACTIONS:
        raise ParamError("action", f"action must be one of {', '.join(ACTIONS)}")
    quarantine = text(p, "quarantine", 64)
    service = service_of(request)
    caller = user.caller
    if action in ("release", "delete"):
        result = service.act(caller, action, mid, quarantine)
    elif action == "delay":
        result = service.delay(caller, mid, text(p, "delay", 8) or "", quarantine)
    elif action == "move":
        target = text(p, "target", 64)
        if not quarantine or not target:
            raise ParamError("target", "move needs the quarantine to move from and the target")
        result = service.move(caller, mid, quarantine, target)
    else:
        result = service.copy(caller, mid, text(p, "address", 320) or "")
    return await _page(request, user, mid, result=result,
                       status_code=200 if result.ok else 409)


@router.post("/quarantine/messages/{mid}/rescan", include_in_schema=False,
             dependencies=[Depends(verify_csrf)])
async def message_rescan(request: Request, mid: Mid,
                         user: Annotated[User, Depends(require("rescan"))]) -> Response:
    check_names([(k, v) for k, v in (await request.form()).multi_items() if k != FIELD], ())
    try:
        verdict = await service_of(request).rescan(user.caller, mid)
    except Forbidden:
        raise
    except OperatorError as exc:
        return await _page(request, user, mid, rescan=None, rescan_error=str(exc),
                           status_code=409)
    return await _page(request, user, mid, rescan=verdict, rescan_error="")


__all__ = ["DOWNLOAD_ROLES", "history", "router"]
