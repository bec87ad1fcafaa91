"""The manager's REST API, shaped like AsyncOS's v2.0 quarantine API (FastAPI).

- `GET  /api/v2.0/quarantine/messages` — search (AsyncOS parameter names:
  `quarantines`, `startDate`, `endDate`, `envelopeSenderFilterBy/Value`,
  `envelopeRecipientFilterBy/Value`, `subjectFilterBy/Value`, plus
  `reasonFilterBy/Value`, `attachmentNameFilterBy/Value`,
  `attachmentSizeMin/Max`, `originatingEsaIp`, `orderBy`, `orderDir`,
  `offset`, `limit`); `meta.totalCount` and one entry per message.
- `GET  /api/v2.0/quarantine/messages/details?mid=` — one message and its body.
- `POST /api/v2.0/quarantine/messages` — `{"action": "release"|"delay"|"move"|
  "sendcopy", "quarantineName", "mids", ...}`.
- `DELETE /api/v2.0/quarantine/messages` — `{"quarantineName", "mids"}`.
- `POST /api/v2.0/quarantine/messages/bulk` — an action on a search result,
  `dryRun` lists it.
- `GET  /api/v2.0/audit/verify` — the audit trail's hash chain (admins).

The same routes answer under `/sma/api/v2.0`. Authentication: `Authorization:
Bearer <token>`, tokens from `<api>` with a role (admin, operator, helpdesk,
read-only, custom with named quarantines). Handlers are coroutines: they
run on the manager's event loop like every other operator command.
"""



from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pvoq import __version__
from pvoq.config.model import ApiToken
from pvoq.errors import PvoqError, http_status
from pvoq.quarantine.roles import Caller
from pvoq.quarantine.search import SearchQuery, TextFilter
from pvoq.quarantine.service import ActionResult, QuarantineService

FILTER_BY = {"contains": "contains", "is": "is", "begins_with": "starts_with",
             "starts_with": "starts_with", "ends_with": "ends_with",
             "does_not_contain": "does_not_contain", "is_not": "is_not",
             "does_not_begin_with": "does_not_start_with",
             "does_not_start_with": "does_not_start_with",
             "does_not_end_with": "does_not_end_with"}
ORDER_BY = {"received": "received", "sender": "sender", "subject": "subject",
            "scheduledExit": "scheduled_exit", "scheduled_exit": "scheduled_exit",
            "size": "size"}


class ActionBody(BaseModel):
    """POST body: an action on messages by MID."""

    action: str = Field(description="release, delay, move or sendcopy")
    quarantineType: str = "pvo"  # AsyncOS field names
    quarantineName: str | None = None
    mids: list[int]
    delay: str | None = Field(None, description="8h, 24h, 48h or 1w (action delay)")
    destinationQuarantineName: str | None = None
    recipientAddresses: list[str] = []
    recipients: list[str] = Field(default_factory=list,
                                  description="release for these envelope recipients only")


class DeleteBody(BaseModel):
    """DELETE body: messages to delete by MID."""

    quarantineType: str = "pvo"
    quarantineName: str | None = None
    mids: list[int]
    recipients: list[str] = Field(default_factory=list,
                                  description="delete for these envelope recipients only")


class BulkBody(BaseModel):
    """A bulk action on every message a search finds."""

    action: str
    search: dict[str, Any] = Field(default_factory=dict,
                                   description="the search parameters, as for GET messages")
    dryRun: bool = True
    quarantineName: str | None = None
    delay: str | None = None
    destinationQuarantineName: str | None = None
    recipientAddress: str | None = None


def _date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise HTTPException(400, f"not a date: {value!r}") from None


def _filter(by: str | None, value: str | None) -> TextFilter | None:
    if value is None or value == "":
        return None
    op = FILTER_BY.get(by or "contains")
    if op is None:
        raise HTTPException(400, f"unknown filter {by!r}; one of {', '.join(FILTER_BY)}")
    return TextFilter(op, value)


def query_from_params(p: dict[str, Any]) -> SearchQuery:
    """A SearchQuery from AsyncOS-style parameters (pure)."""
    names = p.get("quarantines") or ""
    order = ORDER_BY.get(p.get("orderBy") or "received")
    if order is None:
        raise HTTPException(400, f"cannot order by {p.get('orderBy')!r}")
    size_min, size_max = p.get("attachmentSizeMin"), p.get("attachmentSizeMax")
    return SearchQuery(
        quarantines=tuple(n.strip() for n in str(names).split(",") if n.strip()),
        received_from=_date(p.get("startDate")), received_to=_date(p.get("endDate")),
        sender=_filter(p.get("envelopeSenderFilterBy"), p.get("envelopeSenderFilterValue")),
        recipient=_filter(p.get("envelopeRecipientFilterBy"),
                          p.get("envelopeRecipientFilterValue")),
        subject=_filter(p.get("subjectFilterBy"), p.get("subjectFilterValue")),
        reason=_filter(p.get("reasonFilterBy"), p.get("reasonFilterValue")),
        attachment_name=_filter(p.get("attachmentNameFilterBy"),
                                p.get("attachmentNameFilterValue")),
        attachment_min_size=None if size_min in (None, "") else int(size_min),
        attachment_max_size=None if size_max in (None, "") else int(size_max),
        gateway=p.get("originatingEsaIp") or p.get("originatingEsa") or None,
        order_by=order, order_dir=str(p.get("orderDir") or "desc").lower(),
        limit=int(p.get("limit") or 20), offset=int(p.get("offset") or 0))


def _entry(m: dict[str, Any]) -> dict[str, Any]:
    held = [q for q in m["quarantines"] if q["state"] == "held"]
    exits = [q["scheduled_exit"] for q in held if q["scheduled_exit"]]
    return {"mid": m["id"], "attributes": {
        "received": datetime.fromtimestamp(m["received_at"]).isoformat(),
        "scheduledExit": datetime.fromtimestamp(min(exits)).isoformat() if exits else None,
        "sender": m["sender"], "recipient": [r["address"] for r in m["recipients"]],
        "subject": m["subject"], "size": m["size"], "esaHostName": m["origin_host"],
        "esaMid": m["origin_mid"], "originatingEsaIp": m["origin_ip"],
        "inQuarantines": ", ".join(q["quarantine"] for q in held),
        "quarantineForReasonDict": [{"quarantineName": q["quarantine"],
                                     "reason": q["reason"]} for q in held]}}


def _results(action: str, results: list[ActionResult]) -> dict[str, Any]:
    return {"data": {"action": action, "totalCount": sum(1 for r in results if r.ok),
                     "mids": [r.mid for r in results if r.ok],
                     "failed": [{"mid": r.mid, "reason": r.text} for r in results if not r.ok]}}


def create_app(service: QuarantineService, tokens: tuple[ApiToken, ...]) -> FastAPI:
    """The API application over *service*, authenticating with *tokens*."""
    by_token = {t.token: t for t in tokens}
    app = FastAPI(title="pvoq manager API", version=__version__,
                  description="Centralized Policy, Virus and Outbreak quarantines "
                              "(AsyncOS v2.0 shape).")

    def caller(request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        entry = by_token.get(token.strip()) if scheme.lower() == "bearer" else None
        if entry is None:
            raise HTTPException(401, "missing or unknown bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
        origin = request.client.host if request.client else "unknown"
        return Caller(entry.user, f"api {origin}", entry.role, entry.quarantines)

    @app.exception_handler(PvoqError)
    async def refused(_request: Request, exc: PvoqError) -> JSONResponse:
        """One mapping for the whole tree: an operator error's status (`errors.http_status`)."""
        status = http_status(exc)
        if status is None:
            raise exc  # not the client's doing: a 500, as for any other exception
        return JSONResponse({"error": {"message": str(exc)}}, status_code=status)

    Who = Annotated[Caller, Depends(caller)]

    router = APIRouter()

    @router.get("/quarantine/messages", summary="Search quarantined messages")
    async def search(request: Request, who: Who,
                     limit: Annotated[int, Query(ge=1, le=250)] = 20,
                     offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query_params)
        params["limit"], params["offset"] = limit, offset
        rows, total = service.search(who, query_from_params(params))
        return {"meta": {"totalCount": total}, "data": [_entry(m) for m in rows]}

    @router.get("/quarantine/messages/details", summary="One message with its body")
    async def details(mid: int, who: Who) -> dict[str, Any]:
        record = service.details(who, mid)
        entry = _entry(record)
        entry["attributes"]["messageBody"] = record["body"]
        entry["attributes"]["attachments"] = [a["name"] for a in record["attachments"]]
        return {"data": entry}

    @router.post("/quarantine/messages", summary="Release, delay, move or send a copy")
    async def act(body: ActionBody, who: Who) -> dict[str, Any]:
        name = body.quarantineName
        if body.action == "release":
            results = [service.act(who, "release", mid, name, recipients=body.recipients or None)
                       for mid in body.mids]
        elif body.action == "delay":
            results = [service.delay(who, mid, body.delay or "", name) for mid in body.mids]
        elif body.action == "move":
            if not name or not body.destinationQuarantineName:
                raise HTTPException(400, "move needs quarantineName and "
                                         "destinationQuarantineName")
            results = [service.move(who, mid, name, body.destinationQuarantineName)
                       for mid in body.mids]
        elif body.action == "sendcopy":
            results = [service.copy(who, mid, address) for mid in body.mids
                       for address in body.recipientAddresses]
        else:
            raise HTTPException(400, f"unknown action {body.action!r}")
        return _results(body.action, results)

    @router.delete("/quarantine/messages", summary="Delete messages")
    async def delete(body: DeleteBody, who: Who) -> dict[str, Any]:
        return _results("delete", [service.act(who, "delete", mid, body.quarantineName,
                                               recipients=body.recipients or None)
                                   for mid in body.mids])

    @router.post("/quarantine/messages/bulk", summary="An action on a search result")
    async def bulk(body: BulkBody, who: Who) -> dict[str, Any]:
        query = query_from_params({**body.search, "limit": 250})
        return {"data": service.bulk(who, query, body.action, dry_run=body.dryRun,
                                     quarantine=body.quarantineName, delay=body.delay,
                                     target=body.destinationQuarantineName,
                                     address=body.recipientAddress)}

    @router.get("/audit/verify", summary="Verify the audit trail's hash chain")
    async def audit_verify(who: Who) -> dict[str, Any]:
        from pvoq.quarantine import roles

        roles.check(who, "audit")
        verdict = service.audit.verify()
        return {"data": {"ok": verdict.ok, "records": verdict.records,
                         "brokenAt": verdict.broken_at, "problem": verdict.problem}}

    app.include_router(router, prefix="/api/v2.0")
    app.include_router(router, prefix="/sma/api/v2.0", include_in_schema=False)
    return app
