"""Tests for the Doctor and Message Tracking pages over fakes that check roles as the
appliance does (the pages' end-to-end tests run them against real processes)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from consolehelpers import csrf_of, log_in, make_context
from fastapi.testclient import TestClient

from pvoq.admin.protocol import CommandError
from pvoq.doctor.result import fail, ok, warn
from pvoq.users.identity import authorize, web_peer
from pvoq.web.console import doctor_pages
from pvoq.web.console.app import build_app
from pvoq.web.console.auth import User

HOSTILE = "<script>alert(1)</script>\x1b[31m"
JOURNEY = {
    "gateway": {"source": "gw1.example.com", "mid": 7, "icid": 3, "first": 1.5,
                "connection": "New SMTP ICID 3 interface Data 1 (127.0.0.1) address 127.0.0.1",
                "sender": "a@example.com", "recipients": ["b@example.com"],
                "subject": HOSTILE, "message_id": "<m@x>", "verdicts": ["MID 7 antivirus negative"],
                "quarantine": [], "deliveries": [
                    {"dcid": 4, "destination": "the.cpq.host", "address": "127.0.0.1",
                     "port": 7025, "reply": "250 ok"}]},
    "manager": [{"source": "manager.example.com", "mid": 1, "icid": 9, "origin":
                 {"host": "gw1.example.com", "mid": 7}, "quarantine": ["MID 1 quarantined to "
                 "Policy"], "deliveries": []}],
    "releases": [{"source": "gw1.example.com", "mid": 8, "icid": 10, "origin": {"mid": 7},
                  "verdicts": [], "deliveries": [{"dcid": 11, "destination": "127.0.0.1:25",
                                                  "address": "127.0.0.1", "port": 25,
                                                  "reply": "250 2.0.0 queued"}]}],
    "lines": [{"source": "gw1.example.com", "time": 1.5, "text": f"MID 7 Subject {HOSTILE}"}],
}


class Tracker:
    """The manager's `track` command after the appliance's own role check."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    async def __call__(self, name: str, args: dict[str, Any], user: User) -> dict[str, Any]:
        authorize(name, web_peer(user.name, user.role, user.quarantines, user.origin))
        if name != "track":
            raise CommandError(f"Unknown command: {name}")
        self.asked.append(args)
        return {"data": {"journeys": [JOURNEY]}}


@pytest.fixture
def tracker() -> Tracker:
    return Tracker()


@pytest.fixture
def manager(tmp_path: Path, tracker: Tracker) -> Any:
    ctx = make_context(tmp_path, role="manager", call=tracker)
    ctx.config = lambda: SimpleNamespace(path=tmp_path / "manager.xml")  # type: ignore[assignment,return-value]
    with TestClient(build_app(ctx), base_url="http://127.0.0.1") as c:
        yield c


def test_a_read_only_user_tracks_and_hostile_strings_stay_text(manager: TestClient,
                                                               tracker: Tracker) -> None:
    log_in(manager, "rita")
    form = manager.get("/monitor/tracking")
    assert form.status_code == 200 and tracker.asked == []      # no filter: only the form
    page = manager.get("/monitor/tracking", params={"subject": "plans", "mid": "7",
                                                    "since": "2026-11-30T15:04"})
    assert page.status_code == 200
    (asked,) = tracker.asked
    assert asked["subject"] == "plans" and asked["mid"] == 7 and asked["limit"] == 20
    assert asked["since"] == 1796051040.0
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "\x1b" not in page.text and "\\x1b[31m" in page.text
    assert "MID originally 7" in page.text and "250 2.0.0 queued" in page.text


@pytest.mark.parametrize(("params", "field"), [({"since": "yesterday"}, "since"),
                                               ({"mid": "-3"}, "mid"),
                                               ({"limit": "1000000"}, "limit"),
                                               ({"subject": "a\x00b"}, "subject")])
def test_a_bad_filter_is_a_400_naming_it(manager: TestClient, tracker: Tracker,
                                         params: dict[str, str], field: str) -> None:
    log_in(manager, "rita")
    page = manager.get("/monitor/tracking", params=params)
    assert page.status_code == 400 and f"{field}:" in page.text
    assert tracker.asked == []


def test_doctor_is_for_administrators_only(manager: TestClient,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[Any] = []

    async def fake_check_all(config: Any, *, timeout_s: float) -> list[Any]:
        ran.append(config)
        return [ok("appliance", "running"), warn("disk", "80% used", "free some space"),
                fail("log subscription gw1", f"gw1: never pulled; last error: {HOSTILE}",
                     "make the gateway reachable over SSH")]

    monkeypatch.setattr(doctor_pages, "check_all", fake_check_all)
    log_in(manager, "rita")
    assert manager.get("/system/doctor").status_code == 403
    home = manager.get("/").text
    assert "/system/doctor" not in home
    token = csrf_of(home)
    assert manager.post("/system/doctor", data={"csrf_token": token}).status_code == 403
    assert ran == []


def test_doctor_runs_on_request_and_shows_each_fix(manager: TestClient,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[Any] = []

    async def fake_check_all(config: Any, *, timeout_s: float) -> list[Any]:
        ran.append(config)
        return [ok("appliance", "running"),
                fail("log subscription gw1", f"gw1: never pulled; last error: {HOSTILE}",
                     "make the gateway reachable over SSH")]

    monkeypatch.setattr(doctor_pages, "check_all", fake_check_all)
    log_in(manager, "alice")
    page = manager.get("/system/doctor")
    assert page.status_code == 200 and ran == []               # showing it runs nothing
    assert manager.post("/system/doctor", data={}).status_code == 403   # no CSRF token
    assert ran == []
    done = manager.post("/system/doctor", data={"csrf_token": csrf_of(page.text)})
    assert done.status_code == 200 and len(ran) == 1
    assert "1 OK, 0 WARN, 1 FAIL" in done.text
    assert 'class="status status-fail">FAIL' in done.text
    assert "make the gateway reachable over SSH" in done.text
    assert "<script>" not in done.text and "\\x1b[31m" in done.text
