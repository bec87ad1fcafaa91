"""CSRF protection: a token in every form, checked on every POST.

Templates put `{{ csrf_field() }}` inside every `<form method="post">`;
every POST handler depends on `verify_csrf`. A logged-in user's token is
their session's; before login (the login form itself) it is a random value
in the `LOGIN_CSRF_COOKIE` cookie that the form must repeat.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import HTTPException, Request
from markupsafe import Markup, escape

from pvoq.web.console.auth import current_session

FIELD = "csrf_token"
LOGIN_CSRF_COOKIE = "pvoq_login_csrf"


def token_for(request: Request) -> str:
    """The token forms of this request's page carry."""
    session = current_session(request)
    if session is not None:
        return session.csrf
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or request.scope.get("pvoq_new_login_csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.scope["pvoq_new_login_csrf"] = token   # the response sets the cookie
    return str(token)


def field_html(request: Request) -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(
        FIELD, escape(token_for(request)))


async def verify_csrf(request: Request) -> None:
    """403 unless the posted form carries this session's (or login form's) token."""
    form = await request.form()
    sent = form.get(FIELD)
    session = current_session(request)
    expected = session.csrf if session is not None else request.cookies.get(LOGIN_CSRF_COOKIE)
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise HTTPException(403, "The form's security token is missing or stale: reload "
                                 "the page and try again.")
