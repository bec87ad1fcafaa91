"""The Doctor page in a real Chromium against real processes: the checks run on request,
a suspended listener shows as FAIL with its fix, and a help-desk or read-only user can
neither open the page nor run the checks by posting the form directly."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from consolesetup import ADMIN_PW, READONLY_PW, USERS, browser_page, screenshot

from pvoq.testing.browser import login
from pvoq.testing.localdeploy import Deployment

HELPDESK_PW = "hank's long password"
RUN_TIMEOUT_MS = 150_000     # the checks probe the network; the page waits for them


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(tmp_path / "deploy", retry_min_s=0.5, retry_max_s=2.0, console=True,
                     users=[*USERS, ("hank", "helpdesk", HELPDESK_PW)])
    dep.init()
    try:
        yield dep
    finally:
        dep.stop_all()


def test_the_doctor_page_shows_a_suspended_listener_with_its_fix(
        deployment: Deployment) -> None:
    deployment.start()
    deployment.admin(deployment.gateway_config, "suspendlisteners",
                     {"listener": "IncomingMail"})
    url = deployment.console_url("gateway")
    with browser_page(deployment, "gateway") as page:
        login(page, url, "alice", ADMIN_PW)
        page.goto(url + "/system/doctor")
        assert page.locator("#doctor-results").count() == 0      # nothing runs on opening
        with page.expect_navigation(timeout=RUN_TIMEOUT_MS):
            page.click("#run-doctor")
        rows = page.locator("#doctor-results tbody tr")
        names = rows.locator("td.name").all_inner_texts()
        cli = subprocess.run([sys.executable, "-m", "pvoq", "doctor", "-c",
                              str(deployment.gateway_config), "--json"],
                             capture_output=True, text=True, timeout=180)
        assert names == [c["name"] for c in json.loads(cli.stdout)["checks"]]  # same report
        assert "appliance" in names and any(n.startswith("disk") for n in names)
        listeners = rows.filter(has=page.locator("td.name", has_text="listeners")).first
        assert listeners.locator("td.status").inner_text() == "FAIL"
        assert "receiving suspended on IncomingMail" in listeners.locator(
            "td.observed").inner_text()
        assert "resumelisteners IncomingMail" in listeners.locator("td.fix").inner_text()
        assert "FAIL" in page.locator("#doctor-summary").inner_text()
        screenshot(page, "gateway-doctor")
    deployment.admin(deployment.gateway_config, "resumelisteners",
                     {"listener": "IncomingMail"})


@pytest.mark.parametrize(("user", "password"), [("hank", HELPDESK_PW), ("rita", READONLY_PW)])
def test_a_help_desk_or_read_only_user_cannot_run_doctor(
        deployment: Deployment, user: str, password: str) -> None:
    deployment.start_manager()
    url = deployment.console_url("manager")
    with browser_page(deployment, "manager") as page:
        login(page, url, user, password)
        assert page.locator("a[href='/system/doctor']").count() == 0   # not in the menu
        token = page.locator("input[name=csrf_token]").first.get_attribute("value")
        shown = page.goto(url + "/system/doctor")
        assert shown is not None and shown.status == 403
        assert "may not configure" in page.locator("#error-message").inner_text()
        reply = page.request.post(url + "/system/doctor", form={"csrf_token": token or ""})
        assert reply.status == 403
        assert "doctor-results" not in reply.text()
