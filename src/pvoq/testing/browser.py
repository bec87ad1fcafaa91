"""A real headless Chromium for the console's tests (Playwright's sync API, Debian's
`/usr/bin/chromium`; never a downloaded browser).

    with chromium() as browser:
        context = browser.new_context(ignore_https_errors=False, ...)
        page = context.new_page()
        login(page, deployment.manager_url, "alice", "pw")

`trusting(browser, ca_file)` gives a context that trusts the deployment's CA
(Chromium takes no CA file: the context checks the chain itself through an
`ssl` handshake with the CA before it is handed out, then ignores the
browser's own verdict).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 30_000


@contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright sync `Browser` on Debian's chromium, closed (and Playwright stopped) after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def check_chain(url: str, ca_file: Path, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """The certificate *url*'s server presents, verified against *ca_file* and its hostname
    (or IP address); raises `ssl.SSLCertVerificationError` otherwise."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection((host, port), timeout=timeout_s) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        cert = tls.getpeercert()
        return dict(cert) if cert else {}


def trusting(browser: Any, url: str, ca_file: Path, **options: Any) -> Any:
    """A browser context for *url*, whose certificate chain has been checked against
    *ca_file* first (Chromium is then told to accept it)."""
    check_chain(url, ca_file)
    context = browser.new_context(ignore_https_errors=True, **options)
    context.set_default_timeout(TIMEOUT_MS)
    return context


def login(page: Any, base_url: str, user: str, password: str) -> None:
    """Log in on the console at *base_url* through its login form; waits for the home page
    (or whatever page the login leads to) and fails if the login page stays."""
    page.goto(base_url.rstrip("/") + "/login")
    page.fill("#username", user)
    page.fill("#password", password)
    with page.expect_navigation():
        page.click("#login")
    if page.locator("#login-error").count():
        raise AssertionError(f"login as {user} failed: "
                             f"{page.locator('#login-error').inner_text()}")
