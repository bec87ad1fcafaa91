"""The manager's Quarantine Search in a real Chromium, against real gateway, manager and sink:
search, saved searches, a bulk dry run that lists and changes nothing, a confirmed bulk
action with its progress, and a help-desk user of a custom role who sees only the
quarantines granted to it and cannot release from the others (pages and REST API)."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from consolesetup import ADMIN_PW, USERS, browser_page, screenshot

from pvoq.testing.browser import login
from pvoq.testing.localdeploy import OUTBREAK_HOST, Deployment, free_port, wait_for

HELEN_PW = "helen's long password"
API = "/api/v2.0/quarantine/messages"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """Three Policy messages and one Outbreak message held; helen's role is custom with
    Policy granted; API tokens for alice and helen."""
    dep = Deployment(tmp_path_factory.mktemp("search") / "deploy", retry_min_s=0.5,
                     retry_max_s=2.0, console=True,
                     users=[*USERS, ("helen", "custom", HELEN_PW)])
    dep.init()
    config = dep.manager_config
    config.write_text(config.read_text().replace("</config>", f"""\
  <api>
    <port>{free_port()}</port>
    <token><value>alice-token</value><user>alice</user><role>admin</role></token>
    <token><value>helen-token</value><user>helen</user><role>custom</role>
      <quarantines>Policy</quarantines></token>
  </api>
</config>"""))
    try:
        dep.start()
        for n in (1, 2, 3):
            dep.send(subject=f"Confidential report {n}", body=f"report {n}")
        dep.send(subject="parcel notice", body=f"http://www.{OUTBREAK_HOST}/x")
        wait_for("four messages held", lambda: len(dep.quarantined()) == 4)
        yield dep
    finally:
        dep.stop_all()


def api(dep: Deployment, token: str) -> httpx.Client:
    return httpx.Client(base_url=dep.console_url("manager"), timeout=30,
                        verify=ssl.create_default_context(cafile=str(dep.ca_file)),
                        headers={"Authorization": f"Bearer {token}"})


def held(dep: Deployment) -> dict[str, int]:
    """Subject -> MID of every held message."""
    return {m["subject"]: m["id"] for m in dep.quarantined()}


def result_mids(page: Any) -> list[int]:
    return [int(x) for x in page.locator("#results tr.result").evaluate_all(
        "rows => rows.map(r => r.dataset.mid)")]


def test_search_save_and_bulk_dry_run_then_confirm(running: Deployment) -> None:
    url = running.console_url("manager")
    before = held(running)
    with browser_page(running, "manager") as page:
        login(page, url, "alice", ADMIN_PW)
        page.goto(url + "/")
        page.click("main a >> text=Quarantine Search")
        page.wait_for_url(re.compile(r"/quarantine/search"))
        assert page.locator("#total").inner_text() == "4 messages"
        page.fill("#subjectFilterValue", "report")
        page.select_option("#orderDir", "asc")
        with page.expect_navigation():
            page.click("#search")
        assert page.locator("#total").inner_text() == "3 messages"
        reports = sorted(mid for subject, mid in before.items() if "report" in subject)
        assert result_mids(page) == reports
        page.set_viewport_size({"width": 1100, "height": 1000})
        screenshot(page, "manager-search")

        page.fill("#saved-name", "reports")
        with page.expect_navigation():
            page.click("#save-search button")
        page.goto(url + "/quarantine/search")
        assert page.locator("#total").inner_text() == "4 messages"
        with page.expect_navigation():
            page.click("#saved-searches a >> text=reports")
        assert result_mids(page) == reports

        page.select_option("#bulk-action", "delete")
        with page.expect_navigation():
            page.click("#bulk-dry-run")
        assert page.locator("#dry-run-count").inner_text() == "3"
        planned = [int(x) for x in page.locator("#dry-run tr.planned").evaluate_all(
            "rows => rows.map(r => r.dataset.mid)")]
        assert planned == reports
        assert "Nothing has been done yet" in page.locator("#dry-run-summary").inner_text()
        screenshot(page, "manager-bulk-dry-run")
        assert held(running) == before          # the dry run changed nothing

        # a confirmed bulk action, with its progress page
        page.goto(url + "/quarantine/search?saved=reports")
        page.select_option("#bulk-action", "delay")
        page.select_option("#bulk-delay", "1w")
        with page.expect_navigation():
            page.click("#bulk-dry-run")
        with page.expect_navigation():
            page.click("#bulk-confirm")
        page.wait_for_function("document.getElementById('bulk-state').textContent"
                               " === 'Finished.'")
        assert page.locator("#bulk-ok").inner_text() == "3"
        assert page.locator("#bulk-progress").get_attribute("value") == "3"
        screenshot(page, "manager-bulk-job")
    assert held(running) == before              # delayed, still held
    exits = {m["id"]: m["quarantines"][0]["scheduled_exit"] for m in running.quarantined()}
    outbreak = before["parcel notice"]
    assert all(exits[mid] > exits[outbreak] + 6 * 86400 for mid in reports)
    assert running.delivered() == []


def test_a_misspelled_search_key_in_a_bulk_dry_run_is_refused(running: Deployment) -> None:
    with api(running, "alice-token") as c:
        r = c.post(f"{API}/bulk", json={"action": "delete", "dryRun": True,
                                        "search": {"subjectFilterValu": "report"}})
        assert r.status_code == 400 and "subjectFilterValu" in r.text
        r = c.get(API, params={"subjectFilterValue": "report", "limit": 100000})
        assert r.status_code == 400 and "limit" in r.text
    assert len(held(running)) == 4


def test_custom_role_sees_and_acts_only_in_granted_quarantines(running: Deployment) -> None:
    url = running.console_url("manager")
    before = held(running)
    outbreak = before["parcel notice"]
    policy = [mid for subject, mid in before.items() if "report" in subject]
    with browser_page(running, "manager") as page:
        login(page, url, "helen", HELEN_PW)
        page.goto(url + "/quarantine/search")
        assert sorted(result_mids(page)) == sorted(policy)
        assert page.locator("input[name=quarantines]").evaluate_all(
            "boxes => boxes.map(b => b.value)") == ["Policy"]
        screenshot(page, "manager-search-custom-role")
        page.goto(f"{url}/quarantine/search?quarantines=Outbreak")
        assert "no access to quarantine Outbreak" in page.locator("#error-message").inner_text()
        page.goto(f"{url}/quarantine/messages/{outbreak}")
        assert "Not allowed" in page.locator("h1").inner_text()
        page.goto(f"{url}/quarantine/messages/{policy[0]}")
        token = page.locator("#release-form input[name=csrf_token]").get_attribute("value")
        for quarantine in ("", "Outbreak"):
            reply = page.request.post(f"{url}/quarantine/messages/{outbreak}/act", form={
                "csrf_token": token or "", "action": "release", "quarantine": quarantine})
            assert reply.status == 403
    with api(running, "helen-token") as c:
        found = c.get(API).json()
        assert sorted(d["mid"] for d in found["data"]) == sorted(policy)
        assert c.get(API, params={"quarantines": "Outbreak"}).status_code == 403
        r = c.post(API, json={"action": "release", "mids": [outbreak],
                              "quarantineName": "Outbreak"})
        assert r.status_code == 403
        r = c.post(API, json={"action": "release", "mids": [outbreak]})
        assert r.status_code == 200 and r.json()["data"]["mids"] == []
        assert c.get(f"{API}/details", params={"mid": outbreak}).status_code == 403
    assert held(running) == before and running.delivered() == []
