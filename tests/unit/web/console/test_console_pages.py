"""Tests for the console's own pages (gateway PVO, delivery status, listeners, pipeline)
over a fake command registry that checks roles as the appliance does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from consolehelpers import csrf_of, log_in, make_context
from fastapi.testclient import TestClient

from pvoq.admin.protocol import CommandError
from pvoq.config.loader import load_config
from pvoq.config.template import ApplianceSpec
from pvoq.deploy import init_appliance
from pvoq.users.identity import authorize, web_peer
from pvoq.web.console.app import build_app
from pvoq.web.console.auth import User


class Registry:
    """Answers as the appliance would, after the same role check."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.ready = False
        self.suspended: list[str] = []
        self.hosts = [{"host": "the.cpq.host", "down": False, "active_rcpts": 2,
                       "conn_out": 1, "deliv_rcpts": 5, "soft_bounces": 0,
                       "hard_bounces": 0}]

    async def __call__(self, name: str, args: dict[str, Any], user: User) -> dict[str, Any]:
        authorize(name, web_peer(user.name, user.role, user.quarantines, user.origin))
        self.calls.append((name, user.name))
        if name == "pvo.check":
            if not self.ready:
                raise CommandError("Not ready: the manager at 127.0.0.1:7025 cannot be used: "
                                   "<refused>")
            return {"text": "Ready: the manager answered: 250 ready"}
        if name == "status":
            return {"data": {"system_status": "Online", "receiving_suspended": self.suspended,
                             "delivery_suspended": False, "messages_in_queue": 1,
                             "active_recipients": 2, "status_as_of": 1.0}}
        if name == "tophosts":
            return {"data": {"hosts": self.hosts}}
        if name == "hoststatus":
            if args["host"] != "the.cpq.host":
                raise CommandError(f"No record of host: {args['host']}")
            return {"data": {"host": "the.cpq.host", "down": False, "active_recipients": 2,
                             "last_error": "<b>boom</b>"}}
        if name == "suspendlisteners":
            self.suspended.append(args["listener"])
            return {"text": f"Receiving suspended for {args['listener']}."}
        raise CommandError(f"Unknown command: {name}")


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def gw(tmp_path: Path, registry: Registry) -> TestClient:
    path = init_appliance(tmp_path / "gw", ApplianceSpec(role="gateway", hostname="gw.test",
                                                         serial="S1"), ca_dir=tmp_path / "ca")
    config = load_config(path)
    ctx = make_context(tmp_path, call=registry)
    ctx.config = lambda: config
    return TestClient(build_app(ctx), base_url="http://127.0.0.1")


def test_enable_greyed_with_the_checks_words_then_enabled(gw: TestClient,
                                                          registry: Registry) -> None:
    log_in(gw)
    page = gw.get("/services/pvo").text
    assert 'id="pvo-enable" disabled' in page
    assert "cannot be used: &lt;refused&gt;" in page     # the check's words, escaped
    registry.ready = True
    page = gw.get("/services/pvo").text
    assert 'id="pvo-enable" >' in page or 'id="pvo-enable">' in page
    done = gw.post("/services/pvo/enable", data={"csrf_token": csrf_of(page)})
    assert done.status_code == 409 and "no pvo.enable command" in done.text


def test_enable_needs_an_administrator(gw: TestClient, registry: Registry) -> None:
    registry.ready = True
    log_in(gw, "oscar")
    page = gw.get("/services/pvo").text
    assert 'id="pvo-enable" disabled' in page and "Only an administrator" in page
    refused = gw.post("/services/pvo/enable", data={"csrf_token": csrf_of(page)})
    assert refused.status_code == 403


def test_delivery_status_escapes_and_bounds(gw: TestClient) -> None:
    log_in(gw, "rita")
    page = gw.get("/monitor/delivery")
    assert page.status_code == 200 and "the.cpq.host" in page.text
    assert "&lt;b&gt;boom&lt;/b&gt;" in page.text and "<b>boom</b>" not in page.text
    for query in ("limit=0", "limit=51", "limit=99999999999999999999999", "limit=-1",
                  "sort=nope", "host=" + "x" * 300, "host=a%00b"):
        reply = gw.get(f"/monitor/delivery?{query}")
        assert reply.status_code == 400, query
    assert "No record of host: elsewhere" in gw.get("/monitor/delivery?host=elsewhere").text


def test_read_only_cannot_suspend_admin_can(gw: TestClient, registry: Registry) -> None:
    log_in(gw, "rita")
    page = gw.get("/network/listeners").text
    assert "only an administrator may suspend" in page
    reply = gw.post("/network/listeners", data={"csrf_token": csrf_of(page), "action": "suspend",
                                                "listener": "IncomingMail"})
    assert reply.status_code == 403 and registry.suspended == []
    gw.cookies.clear()
    log_in(gw, "alice")
    page = gw.get("/network/listeners").text
    reply = gw.post("/network/listeners", data={"csrf_token": csrf_of(page), "action": "suspend",
                                                "listener": "IncomingMail"})
    assert reply.status_code == 200 and registry.suspended == ["IncomingMail"]
    bad = gw.post("/network/listeners", data={"csrf_token": csrf_of(page), "action": "explode"})
    assert bad.status_code == 400


def test_pipeline_page_without_the_command_says_so(gw: TestClient) -> None:
    log_in(gw)
    page = gw.get("/services/pipeline")
    assert page.status_code == 200 and "Unknown command: pipeline.show" in page.text
    assert "no_exe" in page.text     # the configured message filter


def test_gateway_pages_are_not_on_the_manager(tmp_path: Path) -> None:
    ctx = make_context(tmp_path, role="manager")
    client = TestClient(build_app(ctx), base_url="http://127.0.0.1")
    log_in(client)
    assert client.get("/services/pvo").status_code == 404
    assert "PVO Quarantines</a>" not in client.get("/").text
