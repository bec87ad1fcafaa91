"""`pvoq cli pvo enable|disable|status` on a gateway: refused while the manager is down, then
centralized; new caught mail goes to the manager, and back to the local quarantines after
`pvo disable`. The mode is kept in the configuration file across a restart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from consolesetup import ADMIN_PW, browser_page, console_deployment

from pvoq.config.loader import load_config
from pvoq.testing.browser import login
from pvoq.testing.localdeploy import Deployment, wait_for


def cli(dep: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(dep.gateway_config),
                           *args], capture_output=True, text=True, timeout=90)


def held_locally(dep: Deployment) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = dep.admin(dep.gateway_config,
                                           "quarantine.list")["data"]["messages"]
    return rows


def mode(dep: Deployment) -> str:
    return str(dep.admin(dep.gateway_config, "pvo.status")["data"]["description"])


def make_local(dep: Deployment) -> None:
    path = dep.gateway_config
    path.write_text(path.read_text().replace("<enabled>true</enabled>",
                                             "<enabled>false</enabled>", 1))


class TestPvoEnable:
    def test_refused_while_the_manager_is_down_then_enabled_and_disabled(
            self, deployment: Deployment) -> None:
        dep = deployment
        path = dep.gateway_config
        make_local(dep)
        dep.start_sink()
        dep.start_gateway()
        assert mode(dep) == "local"
        dep.send(subject="confidential", body="caught while local")
        wait_for("held locally", lambda: len(held_locally(dep)) == 1)

        # no manager: refused, with the reason, nothing changed
        refused = cli(dep, "pvo", "enable")
        assert refused.returncode == 1
        port = dep.ports["manager_cpq"]
        assert refused.stderr.startswith(f"Cannot enable: the manager at 127.0.0.1:{port} "
                                         "cannot be used: "), refused.stderr
        assert "connection to 127.0.0.1:" in refused.stderr
        assert "<enabled>false</enabled>" in path.read_text()
        assert mode(dep) == "local"

        # the manager up: enabled, persisted, logged
        dep.start_manager()
        enabled = cli(dep, "pvo", "enable")
        assert enabled.returncode == 0, enabled.stderr
        assert "Centralized PVO quarantines enabled" in enabled.stdout
        assert load_config(path).pvo.enabled
        assert mode(dep) == "centralized, 1 message still held locally (migration pending)"
        assert any("Info: Centralized PVO quarantines enabled by " in line and
                   "1 message still held locally (migration pending)" in line
                   for line in dep.mail_logs("gateway"))

        # new caught mail goes to the manager; the local message stays local
        dep.send(subject="confidential", body="caught once centralized")
        (central,) = wait_for("quarantined on the manager", dep.quarantined)
        assert central["origin_host"] == "gw1.pvoq.test"
        assert len(held_locally(dep)) == 1
        assert any("enqueued for transfer to centralized quarantine" in line
                   for line in dep.mail_logs("gateway"))

        # disable: new caught mail is held locally again; the manager keeps its message
        disabled = cli(dep, "pvo", "disable")
        assert disabled.returncode == 0, disabled.stderr
        assert "<enabled>false</enabled>" in path.read_text()
        dep.send(subject="confidential", body="caught after disable")
        wait_for("two held locally", lambda: len(held_locally(dep)) == 2)
        assert len(dep.quarantined()) == 1
        status = cli(dep, "pvo", "status")
        assert status.returncode == 0 and status.stdout.startswith("PVO quarantines: local\n")

        # the mode survives a restart
        dep.stop("gateway")
        dep.start_gateway()
        assert mode(dep) == "local"

    def test_pvo_check_probes_the_manager_whatever_the_flag(
            self, deployment: Deployment) -> None:
        dep = deployment
        make_local(dep)
        dep.start()
        checked = cli(dep, "pvo", "check")
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.startswith("Ready: the manager at 127.0.0.1:")


def test_console_searches_the_local_quarantines_and_its_enable_button_switches(
        tmp_path: Path) -> None:
    dep = console_deployment(tmp_path / "deploy")
    try:
        make_local(dep)
        dep.start_sink()
        dep.start_gateway()
        dep.send(subject="confidential", body="held here")
        (row,) = wait_for("held locally", lambda: held_locally(dep))
        url = dep.console_url("gateway")
        with browser_page(dep, "gateway") as page:
            login(page, url, "alice", ADMIN_PW)
            page.goto(url + "/quarantine/search")
            assert page.locator("#total").inner_text() == "1 message"
            mids = page.locator("#results tr.result").evaluate_all(
                "rows => rows.map(r => r.dataset.mid)")
            assert [int(x) for x in mids] == [row["id"]]

            page.goto(url + "/services/pvo")
            assert page.locator("#pvo-mode").inner_text() == "local"
            assert page.locator("#pvo-enable").is_disabled()  # the manager is down
            dep.start_manager()
            page.goto(url + "/services/pvo")
            with page.expect_navigation():
                page.click("#pvo-enable")
            result = page.locator("#enable-result").inner_text()
            assert result.startswith("Centralized PVO quarantines enabled"), result
            assert page.locator("#pvo-mode").inner_text() == (
                "centralized, 1 message still held locally (migration pending)")
        assert load_config(dep.gateway_config).pvo.enabled
    finally:
        dep.stop_all()
