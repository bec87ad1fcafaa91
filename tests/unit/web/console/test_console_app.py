"""Tests for the console's foundation: login, sessions, CSRF, headers, bounds."""

from __future__ import annotations

import re

from consolehelpers import PASSWORD, csrf_of, log_in
from fastapi.testclient import TestClient

from pvoq.web.console.context import ConsoleContext
from pvoq.web.console.safety import CSP


def test_anonymous_page_redirects_to_login_with_next(client: TestClient) -> None:
    reply = client.get("/?x=1", follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"] == "/login?next=%2F%3Fx%3D1"


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_the_session(
        client: TestClient, ctx: ConsoleContext) -> None:
    log_in(client)
    home = client.get("/")
    assert home.status_code == 200 and "alice" in home.text
    assert len(ctx.sessions) == 1
    cookie = [h for h in client.cookies.jar if h.name == "pvoq_session"][0]
    assert cookie.has_nonstandard_attr("HttpOnly")
    reply = client.post("/logout", data={"csrf_token": csrf_of(home.text)},
                        follow_redirects=False)
    assert reply.status_code == 303 and len(ctx.sessions) == 0
    assert client.get("/", follow_redirects=False).status_code == 303


def test_session_cookie_is_secure_over_https(ctx: ConsoleContext) -> None:
    ctx.https = True
    from pvoq.web.console.app import build_app
    with TestClient(build_app(ctx), base_url="https://127.0.0.1") as c:
        page = c.get("/login")
        reply = c.post("/login", data={"username": "alice", "password": PASSWORD,
                                       "csrf_token": csrf_of(page.text)},
                       follow_redirects=False)
    flags = reply.headers["set-cookie"].lower()
    assert "pvoq_session=" in flags
    for flag in ("secure", "httponly", "samesite=strict", "path=/"):
        assert flag in flags


def test_login_without_csrf_token_is_refused(client: TestClient, ctx: ConsoleContext) -> None:
    client.get("/login")
    reply = client.post("/login", data={"username": "alice", "password": PASSWORD},
                        follow_redirects=False)
    assert reply.status_code == 403
    assert len(ctx.sessions) == 0


def test_logout_without_csrf_token_is_refused(client: TestClient, ctx: ConsoleContext) -> None:
    log_in(client)
    assert client.post("/logout", data={}, follow_redirects=False).status_code == 403
    assert len(ctx.sessions) == 1


def test_wrong_password_then_lockout_is_said_and_logged(client: TestClient,
                                                        ctx: ConsoleContext) -> None:
    seen: list[tuple[str, str, int]] = []
    ctx.users.on_lockout = lambda *a: seen.append(a)
    for i in range(5):
        page = client.get("/login")
        reply = client.post("/login", data={"username": "alice", "password": f"wrong {i}",
                                            "csrf_token": csrf_of(page.text)})
    assert reply.status_code == 403 and "locked" in reply.text
    page = client.get("/login")
    reply = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                        "csrf_token": csrf_of(page.text)})
    assert reply.status_code == 403 and "locked" in reply.text
    assert seen == [("alice", "testclient", 5)]
    ctx.maillog.flush()
    logs = ctx.maillog.path.read_text()
    assert "wrong 4" not in logs and PASSWORD not in logs


def test_next_cannot_leave_the_site(client: TestClient) -> None:
    page = client.get("/login")
    reply = client.post("/login", data={"username": "alice", "password": PASSWORD,
                                        "next": "//evil.example/x",
                                        "csrf_token": csrf_of(page.text)},
                        follow_redirects=False)
    assert reply.headers["location"] == "/"


def test_every_response_has_the_safety_headers(client: TestClient) -> None:
    for path in ("/login", "/static/console.css", "/no-such-page"):
        reply = client.get(path)
        assert reply.headers["content-security-policy"] == CSP
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["referrer-policy"] == "no-referrer"
    assert client.get("/login").headers["cache-control"] == "no-store"


def test_no_inline_script_or_style_in_pages(client: TestClient) -> None:
    log_in(client)
    for path in ("/", "/login", "/no-such-page"):
        html = client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert " style=" not in html and "<style" not in html, path


def test_oversized_body_is_413(client: TestClient) -> None:
    reply = client.post("/login", content=b"x" * (1024 * 1024 + 1),
                        headers={"content-type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 413


def test_docs_are_off(client: TestClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404
