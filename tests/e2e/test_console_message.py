"""The manager's Message page in a real Chromium, against real gateway, manager and sink:
a message whose HTML part carries a script and an external image previews with neither
running nor loading (until the viewer asks for remote images), and releasing it from the
page delivers it downstream."""

from __future__ import annotations

import re
import smtplib
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from consolesetup import ADMIN_PW, browser_page, console_deployment, screenshot

from pvoq.testing.browser import login
from pvoq.testing.localdeploy import Deployment, wait_for

SUBJECT = "Confidential <b>offer</b> [/bold] {{7*7}}"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


class Listener:
    """A loopback HTTP server recording every path asked of it (the "remote" site)."""

    def __init__(self) -> None:
        seen: list[str] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(PNG)))
                self.end_headers()
                self.wfile.write(PNG)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def listener() -> Iterator[Listener]:
    remote = Listener()
    try:
        yield remote
    finally:
        remote.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Deployment]:
    dep = console_deployment(tmp_path / "deploy")
    try:
        dep.start()
        yield dep
    finally:
        dep.stop_all()


def send_hostile(dep: Deployment, port: int) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "alice@sender.example", "bob@example.com", SUBJECT
    msg.set_content("The plain text part.\n")
    msg.add_alternative(
        '<html><body><p id="hello">Hello from the HTML part</p>'
        f'<script>new Image().src = "http://127.0.0.1:{port}/script-ran";'
        'document.body.setAttribute("data-pwned", "1");</script>'
        f'<img id="remote" src="http://127.0.0.1:{port}/remote.png" alt="remote">'
        f'<p onmouseover="fetch(\'http://127.0.0.1:{port}/handler\')">hover</p>'
        "</body></html>", subtype="html")
    msg.add_attachment(b"MZ" * 10, maintype="application", subtype="octet-stream",
                       filename="<img src=x onerror=alert(1)>.txt")
    with smtplib.SMTP(dep.ip, dep.ports["gateway_smtp"], timeout=30) as smtp:
        smtp.send_message(msg)


def test_preview_runs_nothing_loads_nothing_and_release_delivers(
        running: Deployment, listener: Listener) -> None:
    send_hostile(running, listener.port)
    record = wait_for("the message in quarantine", running.quarantined)[0]
    mid = record["id"]
    url = running.console_url("manager")
    console = urlsplit(url).netloc
    with browser_page(running, "manager") as page:
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        login(page, url, "alice", ADMIN_PW)
        page.goto(f"{url}/quarantine/search?subjectFilterValue=offer")
        page.click(f"#results a.mid >> text='{mid}'")
        page.wait_for_url(re.compile(rf"/quarantine/messages/{mid}$"))
        frame = page.frame_locator("#preview")
        assert frame.locator("p").first.inner_text() == "Hello from the HTML part"
        frame.locator("p", has_text="hover").hover()
        # every mail-derived string is shown as text, never as markup
        assert page.locator("#env-subject").inner_text() == SUBJECT
        assert page.locator("#attachments td.filename").inner_text() \
            == "<img src=x onerror=alert(1)>.txt"
        assert page.locator("#text-part").inner_text().strip() == "The plain text part."
        assert frame.locator("script").count() == 0
        assert frame.locator("body").get_attribute("data-pwned") is None
        assert "remote image blocked" in page.locator("#remote-images").inner_text()
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, "manager-message")
        page.evaluate("document.querySelector('section.content').scrollIntoView()")
        screenshot(page, "manager-message-preview")
        page.wait_for_timeout(500)   # give a would-be script or image the time to go out
        assert listener.seen == []
        others = [u for u in requested
                  if not u.startswith("data:") and urlsplit(u).netloc != console]
        assert others == [], others

        # the viewer asks: now (and only now) the remote image loads; scripts still never run
        with page.expect_navigation():
            page.click("#load-remote")
        wait_for("the remote image", lambda: "/remote.png" in listener.seen)
        assert "/script-ran" not in listener.seen and "/handler" not in listener.seen

        page.click("#release")
        page.wait_for_selector("#action-result")
        assert f"MID {mid} released from Policy" in page.locator("#action-result").inner_text()
    envelope, content = wait_for("the release at the sink", running.delivered)[0]
    assert envelope["rcpt_tos"] == ["bob@example.com"]
    assert b"Hello from the HTML part" in content
    assert running.quarantined() == []
