"""The console over HTTPS in a real Chromium: certificate from the deployment CA, log in
and out, the session cookie's flags, and lockout after repeated wrong passwords."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from consolesetup import ADMIN_PW, browser_page, console_deployment, screenshot

from pvoq.testing.browser import check_chain, login
from pvoq.testing.localdeploy import Deployment


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Deployment]:
    dep = console_deployment(tmp_path / "deploy")
    try:
        dep.start()
        yield dep
    finally:
        dep.stop_all()


def test_https_certificate_from_the_deployment_ca(running: Deployment) -> None:
    for name in ("manager", "gateway"):
        cert = check_chain(running.console_url(name), running.ca_file)
        assert ("organizationalUnitName", "web") in [rdn[0] for rdn in cert["subject"]]
    with pytest.raises(ssl.SSLCertVerificationError):   # the default trust store refuses it
        check_chain(running.console_url("gateway"), Path(ssl.get_default_verify_paths().cafile
                                                          or "/etc/ssl/certs/ca-certificates.crt"))
    with httpx.Client(verify=ssl.create_default_context(cafile=str(running.ca_file))) as c:
        reply = c.get(running.console_url("gateway") + "/static/console.css")
    assert reply.status_code == 200
    assert "script-src 'self'" in reply.headers["content-security-policy"]


def test_login_cookie_flags_and_logout(running: Deployment) -> None:
    with browser_page(running, "gateway") as page:
        page.goto(running.console_url("gateway") + "/monitor/delivery")
        assert "/login?next=" in page.url
        screenshot(page, "login")
        login(page, running.console_url("gateway"), "alice", ADMIN_PW)
        assert page.locator("#current-user").inner_text() == "alice"
        cookie = next(c for c in page.context.cookies() if c["name"] == "pvoq_session")
        assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
        screenshot(page, "gateway-home")
        with page.expect_navigation():
            page.click("#logout")
        assert page.url.endswith("/login")
        page.goto(running.console_url("gateway") + "/")
        assert "/login" in page.url   # the old session is gone server-side
        assert not [c for c in page.context.cookies() if c["name"] == "pvoq_session"]
    logs = "\n".join(running.mail_logs("gateway"))
    assert "Console login: user alice (admin) from 127.0.0.1" in logs
    assert "Console logout: user alice from 127.0.0.1" in logs


def test_wrong_passwords_lock_the_account(running: Deployment) -> None:
    url = running.console_url("manager")
    with browser_page(running, "manager") as page:
        for attempt in range(5):
            page.goto(url + "/login")
            page.fill("#username", "alice")
            page.fill("#password", f"not the password {attempt}")
            with page.expect_navigation():
                page.click("#login")
        assert "locked" in page.locator("#login-error").inner_text()
        screenshot(page, "login-locked")
        page.goto(url + "/login")     # now even the right password is refused
        page.fill("#username", "alice")
        page.fill("#password", ADMIN_PW)
        with page.expect_navigation():
            page.click("#login")
        assert "locked" in page.locator("#login-error").inner_text()
        assert "/login" in page.url
    logs = running.mail_logs("manager")
    warning = [line for line in logs if "locked out" in line]
    assert len(warning) == 1 and "Warning:" in warning[0]
    assert "alice" in warning[0] and "127.0.0.1" in warning[0]
    assert not any("not the password" in line or ADMIN_PW in line for line in logs)
    listed = running.admin(running.manager_config, "user.list")["data"]["users"]
    assert next(u for u in listed if u["name"] == "alice")["locked_until"]


def test_a_session_outlives_a_restart_of_the_appliance(running: Deployment) -> None:
    url = running.console_url("gateway")
    with browser_page(running, "gateway") as page:
        login(page, url, "alice", ADMIN_PW)
        assert page.locator("#current-user").inner_text() == "alice"
        cookie = next(c for c in page.context.cookies() if c["name"] == "pvoq_session")
        running.stop("gateway")                        # SIGTERM: a clean stop
        running.start_gateway()
        page.goto(url + "/monitor/delivery")
        assert "/login" not in page.url                # still logged in, no new login
        assert page.locator("#current-user").inner_text() == "alice"
        stored = (running.root / "gateway" / "data" / "sessions.json").read_text()
        assert cookie["value"] not in stored           # the file never holds the id
        with page.expect_navigation():
            page.click("#logout")
    running.stop("gateway")
    running.start_gateway()
    with httpx.Client(verify=ssl.create_default_context(cafile=str(running.ca_file))) as c:
        c.cookies.set("pvoq_session", cookie["value"])
        reply = c.get(url + "/monitor/delivery")
    assert reply.status_code in (302, 303, 307) and "/login" in reply.headers["location"]
