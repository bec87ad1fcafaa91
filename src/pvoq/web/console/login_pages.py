"""`/login` and `/logout`: the session cookie, lockout, and their mail_logs lines.

The session cookie (`auth.SESSION_COOKIE`) is `HttpOnly`, `SameSite=Strict`,
`Path=/`, and `Secure` when the console is served over HTTPS; a login always
makes a new session (the id a browser had before is never promoted). A
failed login is an Info line, a lockout a Warning naming the user and the
client address (`UserStore.on_lockout`); no line ever holds a password.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from pvoq.users import AccountLocked, LoginFailed
from pvoq.users.store import MAX_PASSWORD
from pvoq.web.console.auth import SESSION_COOKIE, client_address, current_session
from pvoq.web.console.csrf import LOGIN_CSRF_COOKIE, verify_csrf
from pvoq.web.console.templating import render

router = APIRouter()
MAX_NEXT = 2048


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this site only (never `//host` or a URL)."""
    if (not target or not target.startswith("/") or target.startswith("//")
            or "\\" in target or len(target) > MAX_NEXT
            or any(ord(c) < 0x20 for c in target)):
        return "/"
    return target


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(name, value, path="/", httponly=True, samesite="strict",
                        secure=bool(request.app.state.ctx.https))


@router.get("/login", include_in_schema=False)
async def login_form(request: Request, next: str | None = None) -> Response:
    if current_session(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return login_page(request, next)


def login_page(request: Request, target: str | None, *, error: str | None = None,
               status_code: int = 200) -> Response:
    response = render(request, "login.html", status_code=status_code, next=safe_next(target),
                      error=error)
    new = request.scope.get("pvoq_new_login_csrf")
    if new:
        set_cookie(request, response, LOGIN_CSRF_COOKIE, str(new))
    return response


@router.post("/login", include_in_schema=False, dependencies=[Depends(verify_csrf)])
async def login(request: Request, username: Annotated[str, Form(max_length=64)],
                password: Annotated[str, Form(max_length=MAX_PASSWORD)],
                next: Annotated[str, Form(max_length=MAX_NEXT)] = "/") -> Response:
    ctx = request.app.state.ctx
    client = client_address(request)
    try:
        account = await asyncio.to_thread(ctx.users.authenticate, username, password, client)
    except AccountLocked as exc:
        ctx.maillog.info(f"Console login refused for {username!r} from {client}: "
                         f"account locked")
        return login_page(request, next, error=f"This account is locked after repeated "
                          f"failed logins. {_until(exc)}", status_code=403)
    except LoginFailed:
        ctx.maillog.info(f"Console login failed for {username!r} from {client}")
        return login_page(request, next, error="Wrong user name or password.",
                          status_code=401)
    old = current_session(request)
    if old is not None:
        ctx.sessions.end(old.id)
    session = ctx.sessions.create(account.name, client)
    ctx.maillog.info(f"Console login: user {account.name} ({account.role}) from {client}")
    response = RedirectResponse(safe_next(next), status_code=303)
    set_cookie(request, response, SESSION_COOKIE, session.id)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


def _until(exc: AccountLocked) -> str:
    return "Try again after " + time.strftime("%H:%M:%S UTC", time.gmtime(exc.until)) + "."


@router.post("/logout", include_in_schema=False, dependencies=[Depends(verify_csrf)])
async def logout(request: Request) -> Response:
    ctx = request.app.state.ctx
    session = current_session(request)
    if session is not None:
        ctx.sessions.end(session.id)
        ctx.maillog.info(f"Console logout: user {session.user} from "
                         f"{client_address(request)}")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=bool(ctx.https))
    return response
