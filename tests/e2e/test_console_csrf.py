"""CSRF in a real Chromium: a form posted without its token, or with another session's, is
refused and changes nothing; the login form has a token of its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from consolesetup import ADMIN_PW, browser_page, console_deployment

from pvoq.testing.browser import login
from pvoq.testing.localdeploy import Deployment


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Deployment]:
    dep = console_deployment(tmp_path / "deploy")
    try:
        dep.start_sink()
        dep.start_gateway()
        yield dep
    finally:
        dep.stop_all()


def test_form_without_its_token_is_refused(gateway: Deployment) -> None:
    url = gateway.console_url("gateway")
    with browser_page(gateway, "gateway") as page:
        login(page, url, "alice", ADMIN_PW)
        page.goto(url + "/network/listeners")
        form = page.locator("#listener-IncomingMail form")
        form.locator("input[name=csrf_token]").evaluate("input => input.remove()")
        with page.expect_navigation():
            form.locator("button.suspend").click()
        assert "security token" in page.locator("#error-message").inner_text()
        assert gateway.admin(gateway.gateway_config, "status")["data"][
            "receiving_suspended"] == []

        page.goto(url + "/network/listeners")
        form = page.locator("#listener-IncomingMail form")
        form.locator("input[name=csrf_token]").evaluate("input => input.value = 'forged'")
        with page.expect_navigation():
            form.locator("button.suspend").click()
        assert "security token" in page.locator("#error-message").inner_text()
        assert gateway.admin(gateway.gateway_config, "status")["data"][
            "receiving_suspended"] == []


def test_login_form_without_its_token_is_refused(gateway: Deployment) -> None:
    url = gateway.console_url("gateway")
    with browser_page(gateway, "gateway") as page:
        page.goto(url + "/login")
        page.locator("input[name=csrf_token]").evaluate("input => input.remove()")
        page.fill("#username", "alice")
        page.fill("#password", ADMIN_PW)
        with page.expect_navigation():
            page.click("#login")
        assert "security token" in page.locator("#error-message").inner_text()
        assert not [c for c in page.context.cookies() if c["name"] == "pvoq_session"]
