"""Who is logged in: `User`, and the dependencies `page_user` and `require(permission)`.

A page handler takes `user: User = Depends(page_user)`: an anonymous request
is redirected to `/login?next=<the page>`. `Depends(require("release"))`
additionally answers 403 when the user's role lacks the permission
(permission names are `quarantine.roles`'s). The session is the cookie
`SESSION_COOKIE`'s server-side record (`pvoq.users.SessionStore`).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request

from pvoq.quarantine.roles import Caller, permits
from pvoq.users import Account, Session

SESSION_COOKIE = "pvoq_session"


@dataclass(frozen=True)
class User:
    """A logged-in console user (or an API token's, or a CLI caller's)."""

    name: str
    role: str
    quarantines: tuple[str, ...] | None = None
    origin: str = "web"          # "web <client ip>", "api <client ip>", "admin-socket ..."

    @property
    def caller(self) -> Caller:
        return Caller(self.name, self.origin, self.role, self.quarantines)

    def may(self, permission: str) -> bool:
        return permits(self.caller, permission)

    @classmethod
    def of(cls, account: Account, origin: str) -> User:
        return cls(account.name, account.role, account.quarantines, origin)


class LoginRequired(Exception):
    """An anonymous request for a page: the app redirects it to the login page."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def current_session(request: Request) -> Session | None:
    """The request's live session (cached on the request), or None."""
    if "pvoq_session" in request.scope:
        return request.scope["pvoq_session"]
    ctx = request.app.state.ctx
    session = ctx.sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is not None and ctx.users.get(session.user) is None:  # deleted meanwhile
        ctx.sessions.end(session.id)
        session = None
    request.scope["pvoq_session"] = session
    return session


def optional_user(request: Request) -> User | None:
    session = current_session(request)
    if session is None:
        return None
    account = request.app.state.ctx.users.get(session.user)
    return User.of(account, f"web {client_address(request)}") if account else None


def page_user(request: Request) -> User:
    """The logged-in user; an anonymous request is sent to the login page."""
    user = optional_user(request)
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(f"/login?next={quote(target, safe='')}")
    return user


def require(permission: str) -> Callable[[Request], Coroutine[Any, Any, User]]:
    """A dependency: the logged-in user, who must have *permission* (403 otherwise)."""
    async def dependency(request: Request) -> User:
        user = page_user(request)
        if not user.may(permission):
            raise HTTPException(403, f"Your role ({user.role}) may not {permission}.")
        return user
    dependency.__name__ = f"require_{permission}"
    return dependency
