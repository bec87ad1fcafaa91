"""The dry rescan button on the manager's message page, in a real Chromium against real
processes: the originating gateway's verdict per stage is shown and nothing changes (the
message stays held, nothing is delivered); a read-only user has no button and is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consolesetup import ADMIN_PW, READONLY_PW, browser_page, console_deployment, screenshot

from pvoq.testing.browser import login
from pvoq.testing.localdeploy import GATEWAY, Deployment, wait_for


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = console_deployment(tmp_path / "deploy")
    try:
        yield dep
    finally:
        dep.stop_all()


def _state(dep: Deployment, mid: int) -> tuple[Any, ...]:
    shown = dep.admin(dep.manager_config, "quarantine.show", {"mid": mid})["data"]
    return (shown["state"], [(q["quarantine"], q["state"]) for q in shown["quarantines"]],
            shown["release_history"])


def test_the_rescan_button_shows_the_verdict_and_changes_nothing(
        deployment: Deployment) -> None:
    dep = deployment
    dep.start()
    dep.send(subject="Confidential rescan in the console", body="x")
    mid = int(wait_for("quarantined", dep.quarantined)[0]["id"])
    before = _state(dep, mid)
    url = dep.console_url("manager")
    with browser_page(dep, "manager") as page:
        login(page, url, "rita", READONLY_PW)
        page.goto(url + f"/quarantine/messages/{mid}")
        assert page.locator("#rescan").count() == 0
        token = page.locator("input[name=csrf_token]").first.get_attribute("value")
        refused = page.request.post(url + f"/quarantine/messages/{mid}/rescan",
                                    form={"csrf_token": token or ""})
        assert refused.status == 403
        with page.expect_navigation():
            page.click("#logout")

        login(page, url, "alice", ADMIN_PW)
        page.goto(url + f"/quarantine/messages/{mid}")
        with page.expect_navigation(timeout=90_000):
            page.click("#rescan")
        assert page.locator("#rescan-gateway").inner_text() == GATEWAY
        assert page.locator("#rescan-action").inner_text() == "QUARANTINE"
        assert "Policy" in page.locator("#rescan-verdicts").inner_text()
        stages = {r.locator("td").nth(0).inner_text(): r.locator("td").nth(1).inner_text()
                  for r in page.locator("#rescan-stages tr.stage").all()}
        assert stages["content_filters"] == "QUARANTINE"
        assert stages["antivirus"] == "PASS"
        assert "rescan" in page.locator("#history").inner_text()   # audited
        page.locator("#rescan-result").scroll_into_view_if_needed()
        screenshot(page, "manager-rescan")
    assert _state(dep, mid) == before
    assert before[0] == "held"
    assert dep.delivered() == []
