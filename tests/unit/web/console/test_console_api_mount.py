"""The REST API under the console's server: `/api/...` and `/sma/api/...` reach it with its own
authentication, every answer carries the safety headers, and no page loads from a CDN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consolehelpers import make_context
from fastapi.testclient import TestClient

from pvoq.config.model import ApiToken
from pvoq.web.api import create_app
from pvoq.web.console.app import build_app
from pvoq.web.console.safety import CSP


def test_api_answers_under_the_console(tmp_path: Path) -> None:
    service: Any = object()       # never reached: every request here stops before it
    api = create_app(service, (ApiToken("t", "alice", "admin"),),
                     role_of=lambda name: ("read-only", None) if name == "alice" else None)
    ctx = make_context(tmp_path, role="manager", api=api)
    with TestClient(build_app(ctx), base_url="http://127.0.0.1") as client:
        for prefix in ("/api", "/sma/api"):
            reply = client.get(f"{prefix}/v2.0/quarantine/messages")
            assert reply.status_code == 401 and reply.json()["detail"]
            assert reply.headers["content-security-policy"] == CSP
        denied = client.get("/api/v2.0/audit/verify", headers={"Authorization": "Bearer t"})
        assert denied.status_code == 403        # alice's user role, not the token's admin
        assert client.get("/", follow_redirects=False).status_code == 303   # still the console
    with TestClient(api, base_url="http://127.0.0.1") as alone:
        assert alone.get("/docs").status_code == 404
        assert alone.get("/redoc").status_code == 404
        assert alone.get("/openapi.json").status_code == 200
