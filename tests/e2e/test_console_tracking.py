"""The Message Tracking page in a real Chromium against a real gateway (SSH on), manager and
sink: a read-only user follows a released message from the gateway's MID to the manager's
MID, back through the gateway (`MID originally N`) and out with the downstream `250`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from consolesetup import READONLY_PW, USERS, browser_page, screenshot
from logsubsetup import find, subscribed_deployment, tracked

from pvoq.testing.browser import login
from pvoq.testing.localdeploy import GATEWAY, MANAGER, Deployment, wait_for

SUBJECT = "Confidential <b>tracked</b> in the console"


@pytest.fixture
def subscribed(tmp_path: Path) -> Iterator[Deployment]:
    with subscribed_deployment(tmp_path, console=True, users=list(USERS)) as dep:
        yield dep


def test_the_tracking_page_follows_a_released_message(subscribed: Deployment) -> None:
    dep = subscribed
    dep.send(subject=SUBJECT, body="caught by the content filter, then released")
    record = wait_for("the message in quarantine", lambda: next(iter(dep.quarantined()), None))
    dep.admin(dep.manager_config, "quarantine.release", {"mid": record["id"]})
    wait_for("the released message at the sink", lambda: len(dep.delivered()) == 1)
    gw = dep.mail_logs("gateway")
    mid = int(find(gw, r"MID (\d+) Subject .*tracked").group(1))
    new_mid = int(find(gw, rf"MID (\d+) received from the SMA .*MID originally {mid}\)")
                  .group(1))
    wait_for("the whole path in the tracking index", lambda: tracked(dep, "tracked"), timeout_s=60)

    url = dep.console_url("manager")
    with browser_page(dep, "manager") as page:
        login(page, url, "rita", READONLY_PW)         # tracking needs no more than read-only
        page.goto(url + "/monitor/tracking")
        assert page.locator(".journey").count() == 0
        page.fill("#f-subject", "tracked")
        with page.expect_navigation():
            page.click("#track")
        (journey,) = page.locator(".journey").all()
        assert journey.locator(".subject").inner_text() == SUBJECT   # text, not markup
        assert journey.locator(".subject b").count() == 0
        gateway_hop = journey.locator(".hop-gateway").inner_text()
        assert f"Gateway {GATEWAY}" in gateway_hop and f"MID {mid}," in gateway_hop
        assert journey.locator(".hop-manager").inner_text().startswith(
            f"Manager {MANAGER}: MID {record['id']} ")
        release = journey.locator(".hop-release").inner_text()
        assert f"MID {new_mid} (MID originally {mid})" in release
        replies = journey.locator(".delivery .reply").all_inner_texts()
        assert replies and replies[-1].startswith("250 ")
        assert "the.cpq.host" in journey.inner_text()
        screenshot(page, "manager-tracking")

        # the manager's MID alone finds the same journey
        page.goto(url + f"/monitor/tracking?manager_mid={record['id']}")
        assert f"MID originally {mid}" in page.locator(".journey").inner_text()
        page.goto(url + "/monitor/tracking?since=yesterday")
        assert "since:" in page.locator("#error-message").inner_text()
