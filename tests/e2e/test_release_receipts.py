"""Release receipts with real processes: the gateway tells the manager what became of
released mail (delivered, bounced), exactly once across SIGKILLs of either side."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from typing import Any

import httpx

from pvoq.testing.localdeploy import Deployment, free_port, wait_for

API = "/api/v2.0/quarantine/messages"


def _show(dep: Deployment, mid: int) -> dict[str, Any]:
    data: dict[str, Any] = dep.admin(dep.manager_config, "quarantine.show", {"mid": mid})["data"]
    return data


def _receipts(dep: Deployment, mid: int) -> list[dict[str, Any]]:
    return list(_show(dep, mid)["receipts"])


def _quarantine(dep: Deployment, subject: str, to: str = "bob@example.com") -> int:
    dep.send(subject=subject, body="x", to=to)
    return int(wait_for("quarantined", lambda: [
        m for m in dep.quarantined() if m["subject"] == subject])[0]["id"])


def _quarantine_and_release(dep: Deployment, subject: str, to: str = "bob@example.com") -> int:
    mid = _quarantine(dep, subject, to)
    dep.admin(dep.manager_config, "quarantine.release", {"mid": mid})
    return mid


class TestReleaseReceipts:
    def test_delivered_release_shows_the_sinks_reply_in_show_api_and_audit(
            self, deployment: Deployment) -> None:
        """show, the API's details and the audit trail say who released it and the 250."""
        port = free_port()
        config = deployment.manager_config
        config.write_text(config.read_text().replace("</config>", f"""
  <api>
    <port>{port}</port>
    <token><value>s3cret</value><user>alice</user><role>admin</role></token>
  </api>
</config>"""))
        deployment.start()
        mid = _quarantine_and_release(deployment, "Confidential receipt")
        wait_for("delivered", deployment.delivered)
        rows = wait_for("the receipt", lambda: _receipts(deployment, mid))
        assert [(r["rid"], r["outcome"], r["gateway"]) for r in rows] == [
            (0, "delivered", "gw1.pvoq.test")]
        assert rows[0]["reply"].startswith("250 ")
        sink = f"127.0.0.1:{deployment.ports['sink']}"
        assert rows[0]["host"] == sink
        history = _show(deployment, mid)["release_history"]
        assert len(history) == 1
        assert re.fullmatch(
            rf"released by \S+ at \S+Z; delivered by gw1\.pvoq\.test to {re.escape(sink)} "
            rf"for <bob@example\.com> at \S+Z: 250 .*", history[0]), history
        with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                          headers={"Authorization": "Bearer s3cret"}, timeout=30) as c:
            got = c.get(f"{API}/details", params={"mid": mid}).json()["data"]["attributes"]
        assert got["releaseHistory"] == history
        assert [(r["outcome"], r["host"]) for r in got["releaseReceipts"]] == [
            ("delivered", sink)]
        tail = deployment.admin(config, "audit.tail", {"limit": 50})["data"]
        receipts = [r for r in tail if r["action"] == "receipt"]
        assert len(receipts) == 1
        assert receipts[0]["actor"] == "gw1.pvoq.test"
        assert receipts[0]["detail"]["mid"] == mid
        assert receipts[0]["detail"]["outcomes"][0]["reply"].startswith("250 ")
        gw = "\n".join(deployment.mail_logs("gateway"))
        assert re.search(r"MID \d+ release receipt d-\S+ for MID \d+ \(manager MID "
                         rf"{mid}: RID 0 delivered\) queued for the\.cpq\.host", gw)
        mgr = "\n".join(deployment.mail_logs("manager"))
        assert re.search(rf"Info: MID {mid} release receipt d-\S+ from gw1\.pvoq\.test "
                         rf"\(ESA MID \d+\): RID 0 delivered to {re.escape(sink)}: '250 ", mgr)

    def test_rejected_release_shows_the_bounce(self, running: Deployment) -> None:
        """A downstream 5xx comes back as a `bounced` receipt carrying the reply."""
        mid = _quarantine_and_release(running, "Confidential bounce", to="reject@example.com")
        rows = wait_for("the receipt", lambda: _receipts(running, mid))
        assert [(r["outcome"], r["address"]) for r in rows] == [
            ("bounced", "reject@example.com")]
        assert rows[0]["reply"].startswith("550 ")
        history = _show(running, mid)["release_history"]
        assert "; bounced by gw1.pvoq.test to " in history[0]
        assert ": 550 " in history[0]
        shown = subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c",
                                str(running.manager_config), "quarantine", "show", str(mid)],
                               capture_output=True, text=True, timeout=60, check=True).stdout
        assert f"Release:           {history[0]}\n" in shown
        verdict = subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c",
                                  str(running.manager_config), "quarantine", "rescan", str(mid),
                                  "--dry-run"], capture_output=True, text=True, timeout=60)
        assert verdict.returncode == 1  # released: nothing held to rescan
        assert "is no longer held (released)" in verdict.stderr + verdict.stdout

    def test_gateway_killed_before_sending_its_receipt_sends_it_after_restart(
            self, running: Deployment) -> None:
        """The receipt is durable on the gateway before the outcome is: SIGKILL loses none."""
        mid = _quarantine(running, "Confidential kill gateway")
        running.admin(running.manager_config, "suspendlisteners", {"listener": "all"})
        running.admin(running.manager_config, "quarantine.release", {"mid": mid})
        wait_for("delivered", running.delivered)
        wait_for("the receipt spooled", lambda: [
            e for e in running.spooled() if e.meta.get("receipt_for")])
        running.stop("gateway", sig=signal.SIGKILL)
        assert _receipts(running, mid) == []
        running.start_gateway()
        running.admin(running.manager_config, "resumelisteners", {"listener": "all"})
        running.admin(running.gateway_config, "delivernow", {})
        rows = wait_for("the receipt", lambda: _receipts(running, mid))
        assert [r["outcome"] for r in rows] == ["delivered"]
        wait_for("the gateway's spool empty", lambda: not running.spooled())
        assert len(_receipts(running, mid)) == 1
        assert len(running.delivered()) == 1

    def test_manager_killed_while_receiving_receipts_ends_with_one_each(
            self, running: Deployment) -> None:
        """SIGKILL of the manager among arriving receipts: after its restart and the
        gateway's retries, each released message has exactly one receipt and audit record."""
        mids = [_quarantine_and_release(running, f"Confidential many {n}") for n in range(6)]
        wait_for("a first receipt arriving", lambda: any(
            "release receipt d-" in line for line in running.mail_logs("manager")),
            interval_s=0.01)
        running.stop("manager", sig=signal.SIGKILL)
        running.start_manager()
        running.admin(running.gateway_config, "delivernow", {})
        for mid in mids:
            wait_for(f"the receipt of MID {mid}", lambda mid=mid: _receipts(running, mid),
                     timeout_s=60)
        wait_for("the gateway's spool empty", lambda: not running.spooled(), timeout_s=60)
        for mid in mids:
            assert len(_receipts(running, mid)) == 1
        tail = running.admin(running.manager_config, "audit.tail",
                             {"limit": 500})["data"]
        counted = sorted(r["detail"]["mid"] for r in tail if r["action"] == "receipt")
        assert counted == sorted(mids)
