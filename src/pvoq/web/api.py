"""The manager's REST API, shaped like AsyncOS's v2.0 quarantine API (FastAPI).

- `GET  /api/v2.0/quarantine/messages` — search (AsyncOS parameter names:
  `quarantines`, `startDate`, `endDate`, `envelopeSenderFilterBy/Value`,
  `envelopeRecipientFilterBy/Value`, `subjectFilterBy/Value`, plus
  `reasonFilterBy/Value`, `attachmentNameFilterBy/Value`,
  `attachmentSizeMin/Max`, `originatingEsaIp`, `orderBy`, `orderDir`,
  `offset`, `limit`); `meta.totalCount` (counted up to 10,000 when filtered:
  `meta.totalExact` false means more than that) and one entry per message.
- `GET  /api/v2.0/quarantine/messages/details?mid=` — one message and its body.
- `POST /api/v2.0/quarantine/messages` — `{"action": "release"|"delay"|"move"|
  "sendcopy", "quarantineName", "mids", ...}`.
- `DELETE /api/v2.0/quarantine/messages` — `{"quarantineName", "mids"}`.
- `POST /api/v2.0/quarantine/messages/bulk` — an action on a search result,
  `dryRun` lists it.
- `GET  /api/v2.0/audit/verify` — the audit trail's hash chain (admins).

The same routes answer under `/sma/api/v2.0`. Authentication: `Authorization:
Bearer <token>`, tokens from `<api>` with a role (admin, operator, helpdesk,
read-only, custom with named quarantines); a token whose user is one of the
appliance's users (`pvoq cli user ...`) acts with that user's role instead.
`/openapi.json` describes the routes; `/docs` and `/redoc` are off (their
pages would load their assets from a CDN). Handlers are coroutines: they
run on the manager's event loop like every other operator command, so an
action on many messages works a slice at a time and yields to the loop
between slices.

Limits (`web.limits`): a request body is at most `max_body_bytes` (413
beyond) and is read only once the token is known (401 before); one request
names at most `max_mids` MIDs (400 beyond); a MID is a positive 64-bit
integer (422 otherwise); every query parameter is checked by `web.params`
(400 naming it: an unknown or repeated name, a value too long or out of
range); a body with a field the route does not know is refused (422).
"""

# Without `from __future__ import annotations`: FastAPI reads the routes' annotations,
# some of them local to `create_app`, at run time.
import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from pvoq import __version__
from pvoq.config.model import ApiToken
from pvoq.errors import PvoqError, http_status
from pvoq.quarantine.roles import Caller
from pvoq.quarantine.search import SearchQuery
from pvoq.quarantine.service import (
    MAX_MID,
    MAX_MIDS,
    SLICE,
    ActionResult,
    QuarantineService,
    check_mids,
)
from pvoq.web.limits import MAX_BODY_BYTES, BodyLimit
from pvoq.web.params import DEFAULT_LIMIT, MAX_LIMIT, ParamError, check_names, parse_search

Mid = Annotated[int, Field(ge=1, le=MAX_MID)]
DETAILS_PARAMS = ("mid", "quarantineType")


class ActionBody(BaseModel):
    """POST body: an action on messages by MID."""

    model_config = ConfigDict(extra="forbid")  # a misspelled field is a 422, never ignored

    action: str = Field(description="release, delay, move or sendcopy")
    quarantineType: str = "pvo"  # AsyncOS field names
    quarantineName: str | None = None
    mids: list[Mid]
    delay: str | None = Field(None, description="8h, 24h, 48h or 1w (action delay)")
    destinationQuarantineName: str | None = None
    recipientAddresses: list[str] = []
    recipients: list[str] = Field(default_factory=list,
                                  description="release for these envelope recipients only")


class RescanBody(BaseModel):
    """`POST /quarantine/messages/rescan`: a dry rescan of one held message."""

    mid: Mid
    dryRun: Literal[True] = True  # only dry runs exist


class DeleteBody(BaseModel):
    """DELETE body: messages to delete by MID."""

    model_config = ConfigDict(extra="forbid")

    quarantineType: str = "pvo"
    quarantineName: str | None = None
    mids: list[Mid]
    recipients: list[str] = Field(default_factory=list,
                                  description="delete for these envelope recipients only")


class BulkBody(BaseModel):
    """A bulk action on every message a search finds."""

    model_config = ConfigDict(extra="forbid")

    action: str
    search: dict[str, Any] = Field(default_factory=dict,
                                   description="the search parameters, as for GET messages")
    dryRun: bool = True
    quarantineName: str | None = None
    delay: str | None = None
    destinationQuarantineName: str | None = None
    recipientAddress: str | None = None


def query_from_params(p: dict[str, Any] | Iterable[tuple[str, Any]],
                      default_limit: int = DEFAULT_LIMIT) -> SearchQuery:
    """A SearchQuery from AsyncOS-style parameters (`web.params`: unknown or repeated
    names, values too long or out of range are a 400 naming the parameter)."""
    try:
        return parse_search(p, default_limit=default_limit).query
    except ParamError as exc:
        raise HTTPException(400, str(exc)) from None


def _iso(when: float) -> str:
    """*when* (epoch seconds) as ISO 8601 local time; beyond what a date can say (an
    exit extended by up to 10^12 seconds, `cpq.transfer.MAX_SECONDS`), the last or
    first date there is."""
    try:
        return datetime.fromtimestamp(when).isoformat()
    except (ValueError, OverflowError, OSError):
        return (datetime.max if when > 0 else datetime.min).replace(microsecond=0).isoformat()


def _entry(m: dict[str, Any]) -> dict[str, Any]:
    held = [q for q in m["quarantines"] if q["state"] == "held"]
    exits = [q["scheduled_exit"] for q in held if q["scheduled_exit"]]
    return {"mid": m["id"], "attributes": {
        "received": _iso(m["received_at"]),
        "scheduledExit": _iso(min(exits)) if exits else None,
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


async def in_slices(mids: Iterable[int], one: Callable[[int], Any],
                    size: int = SLICE) -> list[Any]:
    """*one* applied to each MID, yielding to the event loop after every *size* of them."""
    results: list[Any] = []
    for i, mid in enumerate(mids):
        if i and i % size == 0:
            await asyncio.sleep(0)
        results.append(one(mid))
    return results


def create_app(service: QuarantineService, tokens: tuple[ApiToken, ...], *,
               max_body_bytes: int = MAX_BODY_BYTES, max_mids: int = MAX_MIDS,
               role_of: Callable[[str], tuple[str, tuple[str, ...] | None] | None] | None = None,
               token_owner: Callable[[str], tuple[str, str, tuple[str, ...] | None] | None]
               | None = None,
               ) -> FastAPI:
    """The API application over *service*, authenticating with *tokens*. *role_of*: the
    role (and granted quarantines) of a console user by name, or None when there is no
    such user; a token whose user is one acts with that user's role, not its own.
    *token_owner*: (user, role, granted quarantines) of a user's own API token
    (`pvoq cli user token add`), or None for a secret that is none."""
    by_token = {t.token: t for t in tokens}
    app = FastAPI(title="pvoq manager API", version=__version__,
                  docs_url=None, redoc_url=None,   # their pages load assets from a CDN
                  description="Centralized Policy, Virus and Outbreak quarantines "
                              "(AsyncOS v2.0 shape).")

    def token_entry(header: str) -> ApiToken | None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        entry = by_token.get(token)
        if entry is None and token_owner is not None:
            owner = token_owner(token)
            if owner is not None:  # a user's own token: its user's role as it is now
                return ApiToken(token, owner[0], owner[1], owner[2])
        return entry

    app.add_middleware(BodyLimit, authorized=lambda h: token_entry(h) is not None,
                       limit=max_body_bytes)

    def caller(request: Request) -> Caller:
        entry = token_entry(request.headers.get("authorization", ""))
        if entry is None:
            raise HTTPException(401, "missing or unknown bearer token",
                                headers={"WWW-Authenticate": "Bearer"})
        origin = request.client.host if request.client else "unknown"
        account = role_of(entry.user) if role_of is not None else None
        if account is not None:
            return Caller(entry.user, f"api {origin}", account[0], account[1])
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
    async def search(request: Request, who: Who) -> dict[str, Any]:
        query = query_from_params(request.query_params.multi_items())
        rows, total, exact = service.search_counted(who, query)
        return {"meta": {"totalCount": total, "totalExact": exact},
                "data": [_entry(m) for m in rows]}

    @router.get("/quarantine/messages/details", summary="One message with its body")
    async def details(request: Request, mid: Annotated[int, Query(ge=1, le=MAX_MID)],
                      who: Who) -> dict[str, Any]:
        try:
            check_names(request.query_params.multi_items(), DETAILS_PARAMS)
        except ParamError as exc:
            raise HTTPException(400, str(exc)) from None
        record = service.details(who, mid)
        entry = _entry(record)
        entry["attributes"]["messageBody"] = record["body"]
        entry["attributes"]["attachments"] = [a["name"] for a in record["attachments"]]
        entry["attributes"]["releaseHistory"] = record.get("release_history", [])
        entry["attributes"]["releaseReceipts"] = [{
            "mid": r["entry"], "rid": r["rid"], "recipient": r["address"],
            "outcome": r["outcome"], "gateway": r["gateway"], "host": r["host"],
            "reply": r["reply"], "at": _iso(r["at"])} for r in record.get("receipts", [])]
        return {"data": entry}

    @router.post("/quarantine/messages/rescan",
                 summary="Dry rescan: the originating gateway's verdict, nothing changed")
    async def rescan(body: RescanBody, who: Who) -> dict[str, Any]:
        return {"data": await service.rescan(who, body.mid)}

    @router.post("/quarantine/messages", summary="Release, delay, move or send a copy")
    async def act(body: ActionBody, who: Who) -> dict[str, Any]:
        name = body.quarantineName
        check_mids(body.mids, max_mids)
        results: list[ActionResult]
        if body.action == "release":
            results = await in_slices(body.mids, lambda mid: service.act(
                who, "release", mid, name, recipients=body.recipients or None))
        elif body.action == "delay":
            results = await in_slices(body.mids,
                                      lambda mid: service.delay(who, mid, body.delay or "", name))
        elif body.action == "move":
            target = body.destinationQuarantineName
            if not name or not target:
                raise HTTPException(400, "move needs quarantineName and "
                                         "destinationQuarantineName")
            results = await in_slices(body.mids,
                                      lambda mid: service.move(who, mid, name, target))
        elif body.action == "sendcopy":
            check_mids(body.mids * len(body.recipientAddresses), max_mids)
            copies = await in_slices(body.mids, lambda mid: [
                service.copy(who, mid, address) for address in body.recipientAddresses])
            results = [r for per_mid in copies for r in per_mid]
        else:
            raise HTTPException(400, f"unknown action {body.action!r}")
        return _results(body.action, results)

    @router.delete("/quarantine/messages", summary="Delete messages")
    async def delete(body: DeleteBody, who: Who) -> dict[str, Any]:
        check_mids(body.mids, max_mids)
        return _results("delete", await in_slices(body.mids, lambda mid: service.act(
            who, "delete", mid, body.quarantineName, recipients=body.recipients or None)))

    @router.post("/quarantine/messages/bulk", summary="An action on a search result")
    async def bulk(body: BulkBody, who: Who) -> dict[str, Any]:
        query = query_from_params(body.search, default_limit=MAX_LIMIT)
        summary: dict[str, Any] | None = None
        for step in service.bulk_steps(who, query, body.action, dry_run=body.dryRun,
                                       quarantine=body.quarantineName, delay=body.delay,
                                       target=body.destinationQuarantineName,
                                       address=body.recipientAddress):
            if step is None:
                await asyncio.sleep(0)
            summary = step
        return {"data": summary}

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
