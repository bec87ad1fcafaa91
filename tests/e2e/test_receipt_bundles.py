"""Release receipts several to a transfer (kind `release_receipts`) with real processes:
gathered on the gateway, recorded once each on the manager, across a SIGKILL."""

from __future__ import annotations

import re
import signal

from pvoq.testing.localdeploy import Deployment, wait_for


def _quarantine(dep: Deployment, subject: str) -> int:
    dep.send(subject=subject, body="x", to="bob@example.com")
    return int(wait_for("quarantined", lambda: [
        m for m in dep.quarantined() if m["subject"] == subject])[0]["id"])


def _receipts(dep: Deployment, mid: int) -> list[dict[str, object]]:
    return list(dep.admin(dep.manager_config, "quarantine.show", {"mid": mid})["data"]
                ["receipts"])


def test_receipts_gathered_before_a_sigkill_travel_together_and_are_recorded_once(
        running: Deployment) -> None:
    """Outcomes gathered on the gateway but not acknowledged (the manager's listener is
    suspended) survive a SIGKILL; after the restart they go in one transfer, and each
    released message ends with exactly one receipt and one audit record."""
    mids = [_quarantine(running, f"Confidential bundle {n}") for n in range(5)]
    running.admin(running.manager_config, "suspendlisteners", {"listener": "all"})
    for mid in mids:
        running.admin(running.manager_config, "quarantine.release", {"mid": mid})
    wait_for("delivered", lambda: len(running.delivered()) == 5)
    wait_for("the receipts spooled", lambda: len(
        [e for e in running.spooled() if e.meta.get("receipt_for")]) == 5)
    running.stop("gateway", sig=signal.SIGKILL)
    assert all(_receipts(running, mid) == [] for mid in mids)
    running.admin(running.manager_config, "resumelisteners", {"listener": "all"})
    running.start_gateway()
    running.admin(running.gateway_config, "delivernow", {})
    for mid in mids:
        wait_for(f"the receipt of MID {mid}", lambda mid=mid: _receipts(running, mid),
                 timeout_s=60)
    wait_for("the gateway's spool empty", lambda: not running.spooled(), timeout_s=60)
    for mid in mids:
        assert [r["outcome"] for r in _receipts(running, mid)] == ["delivered"]
    tail = running.admin(running.manager_config, "audit.tail", {"limit": 500})["data"]
    assert sorted(r["detail"]["mid"] for r in tail if r["action"] == "receipt") == sorted(mids)
    assert len(running.delivered()) == 5
    gateway = "\n".join(running.mail_logs("gateway"))
    # Several receipts went in one transaction, and the manager's reply counted them.
    assert re.search(r"Delivery start DCID \d+ MID \d+ to RID \[0\] to Centralized Policy "
                     r"Quarantine \(with MID \d+\)", gateway), gateway
    assert re.search(r"Response '2\.0\.0 Ok: receipts b-\S+: [2-5] recorded", gateway)
    manager = "\n".join(running.mail_logs("manager"))
    for mid in mids:  # one line per message, as a receipt of its own gets
        assert len(re.findall(rf"MID {mid} release receipt d-\S+ from gw1\.pvoq\.test "
                              r"\(ESA MID \d+\): RID 0 delivered to ", manager)) == 1
