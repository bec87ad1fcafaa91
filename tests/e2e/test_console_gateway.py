"""The gateway's and the manager's pages in a real Chromium against real processes: the
Enable button greyed with the check's reason while the manager is down and enabled when it
is up; Delivery Status with `the.cpq.host` and `the.cpq.release.host`; a read-only user
cannot suspend a listener, by the page or by posting the action directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from consolesetup import ADMIN_PW, READONLY_PW, browser_page, console_deployment, screenshot

from pvoq.testing.browser import login
from pvoq.testing.localdeploy import Deployment, wait_for


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = console_deployment(tmp_path / "deploy")
    try:
        yield dep
    finally:
        dep.stop_all()


def test_enable_button_follows_the_readiness_check(deployment: Deployment) -> None:
    deployment.start_sink()
    deployment.start_gateway()             # the manager is not running
    url = deployment.console_url("gateway")
    with browser_page(deployment, "gateway") as page:
        login(page, url, "alice", ADMIN_PW)
        page.goto(url + "/services/pvo")
        button = page.locator("#pvo-enable")
        assert button.is_disabled()
        reason = page.locator("#pvo-reason").inner_text()
        check = deployment.admin_error(deployment.gateway_config, "pvo.check")
        assert reason == check                  # the check's own words
        assert reason.startswith("Not ready:") and str(deployment.ports["manager_cpq"]) in reason
        screenshot(page, "gateway-pvo-not-ready")

        deployment.start_manager()
        page.goto(url + "/services/pvo")
        assert page.locator("#pvo-ready").inner_text().startswith("Ready:")
        assert page.locator("#pvo-enable").is_enabled()
        screenshot(page, "gateway-pvo-ready")
        with page.expect_navigation():
            page.click("#pvo-enable")
        result = page.locator("#enable-result").inner_text()
        assert "pvo.enable" in result or "nabled" in result


def test_delivery_status_shows_the_cpq_hosts(deployment: Deployment) -> None:
    deployment.start()
    deployment.send(subject="confidential console test", body="x")
    mid = wait_for("quarantined", deployment.quarantined)[0]["id"]
    with browser_page(deployment, "gateway") as page:
        url = deployment.console_url("gateway")
        login(page, url, "rita", READONLY_PW)       # looking needs no more than read-only
        page.goto(url + "/monitor/delivery")
        assert "the.cpq.host" in page.locator("#tophosts").inner_text()
        detail = page.locator(".hoststatus").filter(has_text="the.cpq.host").inner_text()
        assert "Delivered recipients" in detail
        assert page.locator("#system-status").inner_text() == "Online"
        screenshot(page, "gateway-delivery-status")
    deployment.admin(deployment.manager_config, "quarantine.release",
                     {"mid": mid, "quarantine": "Policy"})
    wait_for("delivered", deployment.delivered)
    with browser_page(deployment, "manager") as page:
        url = deployment.console_url("manager")
        login(page, url, "alice", ADMIN_PW)
        page.goto(url + "/monitor/delivery?host=the.cpq.release.host")
        assert "the.cpq.release.host" in page.locator("#tophosts").inner_text()
        assert "Host status: the.cpq.release.host" in page.locator(".hoststatus").inner_text()
        page.goto(url + "/monitor/delivery?limit=999999999999999")
        assert "limit" in page.locator("#error-message").inner_text()   # a 400, not a 500


def test_read_only_user_cannot_suspend_a_listener(deployment: Deployment) -> None:
    deployment.start_sink()
    deployment.start_gateway()
    url = deployment.console_url("gateway")
    with browser_page(deployment, "gateway") as page:
        login(page, url, "rita", READONLY_PW)
        page.goto(url + "/network/listeners")
        row = page.locator("#listener-IncomingMail")
        assert row.locator("button.suspend").is_disabled()
        # the action itself, posted as the form would (token and all), is refused too
        token = page.locator("input[name=csrf_token]").first.get_attribute("value")
        reply = page.request.post(url + "/network/listeners", form={
            "csrf_token": token or "", "action": "suspend", "listener": "IncomingMail"})
        assert reply.status == 403
        assert "may not run suspendlisteners" in reply.text()
        status = deployment.admin(deployment.gateway_config, "status")["data"]
        assert status["receiving_suspended"] == []
        with page.expect_navigation():
            page.click("#logout")

        login(page, url, "alice", ADMIN_PW)
        page.goto(url + "/network/listeners")
        with page.expect_navigation():
            page.locator("#listener-IncomingMail button.suspend").click()
        assert "Suspended" in page.locator("#listener-IncomingMail").inner_text()
        status = deployment.admin(deployment.gateway_config, "status")["data"]
        assert status["receiving_suspended"] == ["IncomingMail"]
        screenshot(page, "gateway-listeners")
        with page.expect_navigation():
            page.locator("#listener-IncomingMail button.resume").click()
        assert "Accepting" in page.locator("#listener-IncomingMail").inner_text()
        page.goto(url + "/services/pipeline")
        assert "no_exe" in page.locator("#message-filters").inner_text()
        assert page.locator("#pipeline tbody tr").count() >= 2
        screenshot(page, "gateway-pipeline")
