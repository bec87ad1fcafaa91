"""The manager's administration pages in a real Chromium against real processes:
PVO Quarantines (create, refuse, survive a restart), who may reach them, Centralized
Services (add a gateway with its one-time token, a wrong pinned host key shown as
FAULT), and the Audit page (a release, the verified chain)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consolesetup import ADMIN_PW, READONLY_PW, USERS, browser_page, screenshot

from pvoq.testing.browser import login
from pvoq.testing.localdeploy import GATEWAY, Deployment, wait_for

OPERATOR_PW = "oscar's long password"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One deployment for the module (starting one costs seconds): consoles on, the
    gateway's SSH command service on, an admin, a read-only user and an operator."""
    dep = Deployment(tmp_path_factory.mktemp("admin") / "deploy", retry_min_s=0.5,
                     retry_max_s=2.0, console=True, ssh=True,
                     users=[*USERS, ("oscar", "operator", OPERATOR_PW)])
    dep.init()
    try:
        dep.start()
        yield dep
    finally:
        dep.stop_all()


def submit(page: Any, button: str) -> Any:
    with page.expect_navigation() as nav:
        page.click(button)
    return nav.value


def configured(dep: Deployment) -> dict[str, Any]:
    data: dict[str, Any] = dep.admin(dep.manager_config, "quarantine.config")["data"]
    return data["quarantines"]


def test_admin_creates_a_quarantine_that_survives_a_restart(running: Deployment) -> None:
    dep = running
    url = dep.console_url("manager")
    with browser_page(dep, "manager") as page:
        login(page, url, "alice", ADMIN_PW)
        page.goto(url + "/quarantines")
        assert page.locator('tr[data-quarantine="Policy"] .retention').inner_text() == "10 days"
        screenshot(page, "manager-quarantines")
        page.click("#new-quarantine")
        page.fill("#name", "HR")
        page.fill("#retention", "14")
        page.select_option("#retention_unit", "days")
        page.select_option("#default_action", "release")
        page.fill("#subject_tag", "[RELEASED EARLY]")
        reply = submit(page, "#save")
        assert reply.status == 200 and page.url.endswith("/quarantines?done=add&name=HR")
        assert "Quarantine HR created" in page.locator("#notice").inner_text()
        row = page.locator('tr[data-quarantine="HR"]')
        assert row.locator(".retention").inner_text() == "14 days"
        assert row.locator(".action").inner_text().startswith("release")

    text = dep.manager_config.read_text()
    assert re.search(r"<quarantine>\s*<name>HR</name>\s*<retention>14</retention>", text)
    assert configured(dep)["HR"]["retention_s"] == 14 * 86400
    logs = "\n".join(dep.mail_logs("manager"))
    assert "Quarantine 'HR' created by alice (web 127.0.0.1)" in logs
    assert "Configuration reloaded from" in logs

    dep.stop("manager")
    dep.start_manager()
    assert configured(dep)["HR"]["default_action"] == "release"
    with browser_page(dep, "manager") as page:
        login(page, url, "alice", ADMIN_PW)
        page.goto(url + "/quarantines")
        assert page.locator('tr[data-quarantine="HR"] .retention').inner_text() == "14 days"


def test_invalid_quarantines_are_refused_naming_the_field(running: Deployment) -> None:
    dep = running
    url = dep.console_url("manager")
    if "HR" not in configured(dep):
        dep.admin(dep.manager_config, "quarantine.add", {"name": "HR"})
    before = dep.manager_config.read_bytes()
    with browser_page(dep, "manager") as page:
        login(page, url, "alice", ADMIN_PW)
        page.goto(url + "/quarantines/new")
        page.fill("#name", "Legal")
        page.fill("#retention", "0")
        assert submit(page, "#save").status == 400
        assert "not a positive number" in page.locator("#error-retention").inner_text()
        assert page.locator("#name").input_value() == "Legal"    # what was typed stays
        page.fill("#retention", "5000")                           # days: past 10 years
        assert submit(page, "#save").status == 400
        assert "out of range" in page.locator("#error-retention").inner_text()
        screenshot(page, "manager-quarantine-refused")
        page.fill("#retention", "3")
        page.fill("#name", "HR")
        assert submit(page, "#save").status == 409
        assert "already exists" in page.locator("#error-name").inner_text()
    assert dep.manager_config.read_bytes() == before
    assert "Legal" not in configured(dep)


def csrf_token(page: Any) -> str:
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert token
    return str(token)


@pytest.mark.parametrize(("user", "password"), [("rita", READONLY_PW),
                                                ("oscar", OPERATOR_PW)])
def test_non_admins_can_neither_reach_nor_post(running: Deployment, user: str,
                                               password: str) -> None:
    dep = running
    url = dep.console_url("manager")
    before = dep.manager_config.read_bytes()
    with browser_page(dep, "manager") as page:
        login(page, url, user, password)
        assert page.locator('a[href="/quarantines"]').count() == 0     # not in the menu
        for path in ("/quarantines", "/quarantines/new", "/quarantines/edit?name=Policy",
                     "/quarantines/delete?name=Policy", "/centralized/pvo", "/audit"):
            reply = page.goto(url + path)
            assert reply is not None and reply.status == 403, path
            assert "may not" in page.locator("#error-message").inner_text()
        token = csrf_token(page)            # the user's own, valid token (logout form)
        for path, form in (
                ("/quarantines/new", {"name": "Sneaky", "retention": "1",
                                      "retention_unit": "days", "default_action": "delete"}),
                ("/quarantines/delete", {"name": "HR"}),
                ("/centralized/pvo/add", {"name": GATEWAY, "token": "x"}),
                ("/centralized/pvo/test", {"name": GATEWAY})):
            reply = page.request.post(url + path, form={"csrf_token": token, **form})
            assert reply.status == 403, path
    assert dep.manager_config.read_bytes() == before


def test_audit_page_shows_a_release_and_a_verified_chain(running: Deployment) -> None:
    dep = running
    url = dep.console_url("manager")
    dep.send(subject="Confidential audit page", body="numbers")
    held = wait_for("the message in quarantine", lambda: next(
        (m for m in dep.quarantined() if m["subject"] == "Confidential audit page"), None))
    mid = held["id"]
    dep.admin(dep.manager_config, "quarantine.release", {"mid": mid})
    with browser_page(dep, "manager") as page:
        login(page, url, "alice", ADMIN_PW)
        page.goto(url + "/audit")
        chain = page.locator("#chain").inner_text()
        assert chain.startswith("Chain verified.") and "Audit trail intact" in chain
        page.fill("#mid", str(mid))
        page.fill("#action", "release")
        submit(page, "#filter")
        rows = page.locator("#audit tbody tr")
        assert rows.count() == 1
        assert rows.first.locator(".action").inner_text() == "release"
        assert f'"mid": {mid}' in rows.first.locator(".detail").inner_text()
        screenshot(page, "manager-audit")
        page.goto(url + "/audit?actor=alice&action=quarantine-add")
        assert "quarantine-add" in page.locator("#audit tbody").inner_text()


def test_centralized_services_add_test_and_a_wrong_host_key(running: Deployment) -> None:
    dep = running
    url = dep.console_url("manager")
    issued = dep.admin(dep.gateway_config, "ssh.token")["data"]
    pinned = issued["fingerprint"]
    with browser_page(dep, "manager") as page:
        login(page, url, "alice", ADMIN_PW)
        page.goto(url + "/centralized/pvo")
        cpq = dep.ports["manager_cpq"]
        assert page.locator("#service-port").inner_text() == str(cpq)
        row = page.locator(f'tr[data-gateway="{GATEWAY}"]')
        assert "not added over SSH" in row.locator(".gw-status").inner_text()
        page.select_option("#gateway-name", GATEWAY)
        page.fill("#gateway-host", dep.ip)
        page.fill("#gateway-ssh-port", str(dep.ports["gateway_ssh"]))
        page.fill("#gateway-token", issued["token"])
        submit(page, "#add-gateway-submit")
        assert f"{pinned} (first use: pinned)" in page.locator("#result").inner_text()
        assert row.locator(".fingerprint").inner_text() == pinned
        submit(page, f'tr[data-gateway="{GATEWAY}"] button.test')
        assert "PVO listener at" in page.locator("#result").inner_text()
        assert row.locator(".gw-status").inner_text() == "OK"

        dep.stop("gateway")     # the gateway gets a new host key: the pin no longer matches
        for key in (dep.root / "gateway" / "data" / "ssh").glob("ssh_host_ed25519_key*"):
            key.unlink()
        dep.start_gateway()
        offered = dep.admin(dep.gateway_config, "ssh.show")["data"]["fingerprint"]
        assert offered != pinned
        reply = submit(page, f'tr[data-gateway="{GATEWAY}"] button.test')
        assert reply.status == 400
        assert "host key mismatch" in page.locator("#form-error").inner_text()
        assert row.locator(".gw-status").inner_text() == "FAULT"
        fault = page.locator(f'tr[data-fault-of="{GATEWAY}"]').inner_text()
        assert f"host key mismatch (pinned {pinned}, offered {offered})" in fault
        assert row.locator(".fingerprint").inner_text() == pinned
        screenshot(page, "manager-centralized")


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60)


def test_the_cli_changes_the_same_file(running: Deployment) -> None:
    """`pvoq cli quarantine add|edit|remove`: the page's operations from a terminal."""
    dep = running
    added = _cli(dep.manager_config, "quarantine", "add", "Finance", "--retention", "2",
                 "--unit", "hours", "--action", "release", "--x-header", "X-Early: yes")
    assert added.returncode == 0, added.stderr
    assert "Quarantine Finance created" in added.stdout
    assert configured(dep)["Finance"]["retention_s"] == 7200
    edited = _cli(dep.manager_config, "quarantine", "edit", "Finance", "--retention", "3")
    assert edited.returncode == 0, edited.stderr
    finance = configured(dep)["Finance"]
    assert (finance["retention_s"], finance["default_action"]) == (3 * 3600, "release")
    assert finance["early_release"]["x_header"] == "X-Early: yes"     # kept
    refused = _cli(dep.manager_config, "quarantine", "edit", "Finance", "--retention", "abc")
    assert refused.returncode == 1 and refused.stderr.startswith("retention: ")
    assert "'abc'" in refused.stderr
    removed = _cli(dep.manager_config, "quarantine", "remove", "Finance")
    assert removed.returncode == 0, removed.stderr
    assert "Finance" not in configured(dep) and "Finance" not in dep.manager_config.read_text()
    wrong_role = _cli(dep.gateway_config, "quarantine", "add", "X")
    assert wrong_role.returncode == 2 and "manager" in wrong_role.stderr


def test_screenshots_are_in_the_docs() -> None:
    """docs/console.md shows the pictures these tests take."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "console.md").read_text()
    for name in ("manager-quarantines", "manager-quarantine-refused", "manager-audit",
                 "manager-centralized"):
        assert f"console/{name}.png" in doc
