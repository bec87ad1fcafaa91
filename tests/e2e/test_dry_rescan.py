"""Dry rescans with real processes: the originating gateway scans a held message with
today's rules (a real clamd for the virus) and nothing changes anywhere."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvoq.scan.antivirus import EICAR
from pvoq.testing.clamd import SIGNATURE_NAME, ClamdProcess, ClamdUnavailable
from pvoq.testing.localdeploy import Deployment, DeploymentError, wait_for


@pytest.fixture
def clamd_proc(tmp_path: Path) -> Iterator[ClamdProcess]:
    """A real clamd with the test's own EICAR signature; a missing clamd fails the test."""
    proc = ClamdProcess(tmp_path / "clamd")
    try:
        proc.start()
    except ClamdUnavailable as exc:
        pytest.fail(f"a real clamd is required (Debian package clamav-daemon): {exc}")
    try:
        yield proc
    finally:
        proc.stop()


def _rescan(dep: Deployment, mid: int) -> dict[str, Any]:
    data: dict[str, Any] = dep.admin(dep.manager_config, "quarantine.rescan",
                                     {"mid": mid, "dry_run": True})["data"]
    return data


def _counters(dep: Deployment, config: Path) -> dict[str, Any]:
    rows = dep.admin(config, "status")["data"]["counters"]
    return {str(r[0] if isinstance(r, list) else r): r for r in rows}


def _state(dep: Deployment, mid: int) -> tuple[Any, ...]:
    shown = dep.admin(dep.manager_config, "quarantine.show", {"mid": mid})["data"]
    return (shown["state"], [(q["quarantine"], q["state"]) for q in shown["quarantines"]],
            shown["release_history"])


def _held(dep: Deployment, subject: str) -> int:
    return int(wait_for("quarantined", lambda: [
        m for m in dep.quarantined() if m["subject"] == subject])[0]["id"])


class TestDryRescan:
    def test_a_held_virus_is_reported_viral_by_real_clamd_and_nothing_changes(
            self, deployment: Deployment, clamd_proc: ClamdProcess) -> None:
        """The verdict per stage names the signature; no delivery, no state, no counter."""
        path = deployment.gateway_config
        path.write_text(path.read_text().replace(
            "<antivirus>\n", f"<antivirus>\n<clamd_socket>{clamd_proc.socket_path}"
            "</clamd_socket>\n<timeout_seconds>5</timeout_seconds>\n", 1))
        deployment.start()
        deployment.send(subject="invoice", body="see attachment",
                        attachment=("invoice.com", EICAR))
        mid = _held(deployment, "invoice")
        before = (_state(deployment, mid), _counters(deployment, deployment.gateway_config),
                  _counters(deployment, deployment.manager_config))
        verdict = _rescan(deployment, mid)
        assert verdict["dry_run"] is True and verdict["gateway"] == "gw1.pvoq.test"
        assert verdict["action"] == "quarantine"
        assert [(v["quarantine"], v["stage"]) for v in verdict["verdicts"]] == [
            ("Virus", "antivirus")]
        assert SIGNATURE_NAME in verdict["verdicts"][0]["reason"]
        stages = {s["stage"]: s for s in verdict["stages"]}
        assert stages["antivirus"]["outcome"] == "quarantine"
        assert any(SIGNATURE_NAME in h for h in stages["antivirus"]["hits"])
        assert stages["content_filters"]["outcome"] == "pass"
        after = (_state(deployment, mid), _counters(deployment, deployment.gateway_config),
                 _counters(deployment, deployment.manager_config))
        assert after == before
        assert deployment.delivered() == []
        assert deployment.spooled() == [] and deployment.spooled("manager") == []
        tail = deployment.admin(deployment.manager_config, "audit.tail", {"limit": 20})["data"]
        (record,) = [r for r in tail if r["action"] == "rescan"]
        assert record["detail"]["mid"] == mid and record["detail"]["dry_run"] is True
        assert any(re.search(rf"MID {mid} rescanned \(dry run\) by gw1\.pvoq\.test: "
                             r"QUARANTINE$", line) for line in deployment.mail_logs("manager"))
        assert any(re.search(r"MID \d+ dry rescan of MID \d+ \(manager MID "
                             rf"{mid}\) for manager\.pvoq\.test: QUARANTINE", line)
                   for line in deployment.mail_logs("gateway"))

    def test_a_message_whose_filter_was_removed_rescans_clean_and_stays_held(
            self, running: Deployment) -> None:
        """Today's rules, not those of the day it was caught: the filter is gone, so clean."""
        running.send(subject="Confidential plans", body="x")
        mid = _held(running, "Confidential plans")
        assert _rescan(running, mid)["action"] == "quarantine"
        path = running.gateway_config
        text = path.read_text()
        cut = re.sub(r"<content_filters>.*?</content_filters>",
                     "<content_filters>\n  </content_filters>", text, flags=re.S)
        assert cut != text
        path.write_text(cut)
        running.admin(path, "reload")
        before = _state(running, mid)
        verdict = _rescan(running, mid)
        assert verdict["action"] == "pass"
        assert verdict["verdicts"] == []
        assert {s["stage"]: s["outcome"] for s in verdict["stages"]}["content_filters"] == "pass"
        assert _state(running, mid) == before
        assert before[0] == "held"
        assert running.delivered() == []

    def test_an_unreachable_gateway_is_named_in_the_error(self, running: Deployment) -> None:
        """The gateway down: a clear error naming it, and the message still held."""
        running.send(subject="Confidential down", body="x")
        mid = _held(running, "Confidential down")
        running.stop("gateway", sig=signal.SIGKILL)
        with pytest.raises(DeploymentError) as caught:
            _rescan(running, mid)
        assert re.search(r"gateway gw1\.pvoq\.test at 127\.0\.0\.1:\d+ is unreachable",
                         str(caught.value)), caught.value
        assert _state(running, mid)[0] == "held"

    def test_scanners_down_are_reported_with_the_gateway_and_the_stage(
            self, deployment: Deployment, clamd_proc: ClamdProcess) -> None:
        """clamd stopped after the message was caught: the gateway's 451 comes back."""
        path = deployment.gateway_config
        path.write_text(path.read_text().replace(
            "<antivirus>\n", f"<antivirus>\n<clamd_socket>{clamd_proc.socket_path}"
            "</clamd_socket>\n<timeout_seconds>5</timeout_seconds>\n", 1))
        deployment.start()
        deployment.send(subject="Confidential scanners", body="x")
        mid = _held(deployment, "Confidential scanners")
        clamd_proc.stop()
        with pytest.raises(DeploymentError) as caught:
            _rescan(deployment, mid)
        assert re.search(r"gateway gw1\.pvoq\.test could not rescan MID \d+: 451 4\.3\.0 "
                         r"Dry rescan of MID \d+ failed: ", str(caught.value)), caught.value
        assert _state(deployment, mid)[0] == "held"
