"""`build_app(ctx)`: the one application an appliance serves over HTTPS.

The console's page areas are `APIRouter`s, each included here by one line;
manager-only areas only when `ctx.role == "manager"`. `/static/...` serves the
console's own CSS and JavaScript (nothing is loaded from elsewhere). On the
manager, `ctx.api` (the REST API v2.0 application) answers `/api/...` and
`/sma/api/...` under the same server. FastAPI's `/docs`, `/redoc` and
`/openapi.json` are turned off: they would load their assets from a CDN.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from pvoq import __version__
from pvoq.errors import OperatorError, http_status
from pvoq.web.console import (
    admin_pages,
    doctor_pages,
    gateway_pages,
    home_pages,
    login_pages,
    migration_pages,
    monitor_pages,
    search_pages,
    tracking_pages,
)
from pvoq.web.console.auth import LoginRequired
from pvoq.web.console.context import ConsoleContext
from pvoq.web.console.safety import SafetyMiddleware
from pvoq.web.console.templating import render

STATIC = Path(__file__).parent / "static"


def build_app(ctx: ConsoleContext) -> FastAPI:
    """The console (and, on the manager, the REST API) of the appliance *ctx* describes."""
    app = FastAPI(title=f"pvoq {ctx.role} console", version=__version__,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    app.include_router(login_pages.router)
    app.include_router(home_pages.router)
    app.include_router(monitor_pages.router)
    app.include_router(doctor_pages.router)
    if ctx.role == "gateway":
        app.include_router(gateway_pages.router)
        if ctx.has_quarantines:  # its local quarantines
            app.include_router(search_pages.router)
    if ctx.role == "manager":
        app.include_router(search_pages.router)
        app.include_router(admin_pages.router)
        app.include_router(tracking_pages.router)
        app.include_router(migration_pages.router)
    _finish(app, ctx)
    return app


def _finish(app: FastAPI, ctx: ConsoleContext) -> None:
    """Static files, error pages, and the safety middleware around it all (the API too)."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(LoginRequired)
    async def to_login(_request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(exc.target, status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse:
        return error_page(request, exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> HTMLResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: "
                             f"{e.get('msg', 'invalid')}" for e in exc.errors()[:5])
        return error_page(request, 400, f"Invalid request: {problems}")

    @app.exception_handler(OperatorError)
    async def refused(request: Request, exc: OperatorError) -> HTMLResponse:
        return error_page(request, http_status(exc) or 400, str(exc))

    app.add_middleware(SafetyMiddleware, api=ctx.api, max_body_bytes=ctx.max_body_bytes)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not allowed",
              409: "Conflict", 413: "Too large", 422: "Bad request"}
    return render(request, "error.html", status_code=status,
                  title=titles.get(status, "Error"), status=status, message=message)
