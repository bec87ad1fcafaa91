"""The manager's Migration page in a real Chromium against real processes: the plan tree
of a dry run, a refusal naming the rule, then apply and the progress to completion, and
a cancel refused once nothing runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from consolesetup import ADMIN_PW, USERS, browser_page, screenshot

from pvoq.testing.browser import login
from pvoq.testing.localdeploy import GATEWAY, Deployment, wait_for

CENTRAL_ON = "<pvo_quarantines>\n    <enabled>true</enabled>"
CENTRAL_OFF = "<pvo_quarantines>\n    <enabled>false</enabled>"


def _set_mode(dep: Deployment, centralized: bool) -> None:
    text = dep.gateway_config.read_text()
    old, new = (CENTRAL_OFF, CENTRAL_ON) if centralized else (CENTRAL_ON, CENTRAL_OFF)
    dep.gateway_config.write_text(text.replace(old, new))
    dep.admin(dep.gateway_config, "reload")


def submit(page: Any, button: str) -> None:
    with page.expect_navigation():
        page.click(button)


def test_dry_run_refusal_apply_and_progress(tmp_path: Path) -> None:
    dep = Deployment(tmp_path / "deploy", retry_min_s=0.5, retry_max_s=2.0, console=True,
                     ssh=True, users=list(USERS))
    dep.init()
    try:
        dep.start()
        dep.add_gateway_over_ssh()
        _set_mode(dep, centralized=False)
        for n in range(3):
            dep.send(subject=f"confidential <b>plan</b> {n}", body="numbers")
        wait_for("the local quarantine to hold them", lambda: dep.admin(
            dep.gateway_config, "quarantine.list")["data"]["total"] == 3, timeout_s=60)
        url = dep.console_url("manager")
        with browser_page(dep, "manager") as page:
            login(page, url, "alice", ADMIN_PW)
            page.goto(url + "/migration")
            assert "No migration has been started" in page.inner_text("#migration-state")

            submit(page, "#migration-dry-run")  # the gateway is still local: refused
            assert ('rule "a gateway is all local or all centralized": gateway '
                    f"{GATEWAY} is in local mode") in page.inner_text("#migration-problem")

            _set_mode(dep, centralized=True)
            page.goto(url + "/migration")
            submit(page, "#migration-dry-run")
            tree = page.inner_text("#migration-tree")
            assert f"{GATEWAY} (3 messages)" in tree and "Policy (3) -> Policy" in tree
            assert "dry run: nothing was changed" in tree
            assert dep.admin(dep.gateway_config, "quarantine.list")["data"]["total"] == 3

            submit(page, "#migration-apply")
            assert "started" in page.inner_text("#migration-tree")

            def completed() -> bool:
                page.goto(url + "/migration")
                return page.inner_text("#migration-overall") == "completed"
            wait_for("the page to say completed", completed, timeout_s=90, interval_s=0.5)
            assert page.inner_text("#migration-progress .moved") == "3/3"
            screenshot(page, "manager-migration")
            # Cancel is offered only while a migration runs; asked for now, it is refused.
            assert page.locator("#migration-cancel").count() == 0
            with page.expect_navigation():
                page.evaluate("() => { const f = document.getElementById('migration-form');"
                              " f.action = '/migration/cancel'; f.submit(); }")
            assert "no migration is running" in page.inner_text("#migration-problem")
        assert dep.admin(dep.gateway_config, "quarantine.list")["data"]["total"] == 0
        assert len(dep.quarantined()) == 3
    finally:
        dep.stop_all()
