"""Helpers for the console's in-process tests: a context over a real user store and mail log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from pvoq.maillog import MailLog
from pvoq.users import UserStore
from pvoq.web.console.context import ConsoleContext

PASSWORD = "correct horse"


def make_context(tmp_path: Path, role: str = "gateway", **extra: Any) -> ConsoleContext:
    users = UserStore(tmp_path / "users.json")
    for name, user_role in (("alice", "admin"), ("rita", "read-only"), ("oscar", "operator")):
        users.add(name, PASSWORD, user_role)
    maillog = MailLog(tmp_path / "logs", appliance=f"{role} test", serial="TEST")

    def no_config() -> Any:
        raise AssertionError("configuration not expected")

    return ConsoleContext(role=role, hostname="gw.example.com", config=no_config,
                          maillog=maillog, users=users, https=False, **extra)


def csrf_of(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def log_in(client: TestClient, user: str = "alice", password: str = PASSWORD) -> None:
    page = client.get("/login")
    reply = client.post("/login", data={"username": user, "password": password, "next": "/",
                                        "csrf_token": csrf_of(page.text)},
                        follow_redirects=False)
    assert reply.status_code == 303, reply.text
