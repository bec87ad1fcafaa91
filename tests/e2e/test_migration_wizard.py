"""The migration wizard with real processes: a gateway's local quarantines move to the
manager over CPQ (kind `migration`), each message once, with its reasons, arrival time,
retention clock and audit history; refused, naming the rule and the machine, when a rule
is broken."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from pvoq.testing.localdeploy import GATEWAY, Deployment, wait_for

CENTRAL_ON = "<pvo_quarantines>\n    <enabled>true</enabled>"
CENTRAL_OFF = "<pvo_quarantines>\n    <enabled>false</enabled>"
LEGAL = """  <policy_quarantines><quarantine>Legal</quarantine></policy_quarantines>
  <quarantines>
    <quarantine><name>Legal</name><retention>2</retention><retention_unit>days</retention_unit></quarantine>
  </quarantines>
"""
LEGAL_FILTER = """    <content_filter>
      <name>legal_subject</name>
      <header>Subject</header>
      <regex>(?i)\\blegal\\b</regex>
      <quarantine>Legal</quarantine>
    </content_filter>
  </content_filters>"""


def _deployment(tmp_path: Path) -> Deployment:
    dep = Deployment(tmp_path / "deploy", ssh=True, retry_min_s=0.5, retry_max_s=2.0)
    dep.init()
    text = dep.gateway_config.read_text()
    text = text.replace("  </content_filters>", LEGAL_FILTER, 1)
    text = text.replace("</config>", LEGAL + "</config>")
    dep.gateway_config.write_text(text)
    return dep


def _set_mode(dep: Deployment, centralized: bool) -> None:
    """Switch the gateway between local and centralized mode (its file, then a reload)."""
    text = dep.gateway_config.read_text()
    old, new = (CENTRAL_OFF, CENTRAL_ON) if centralized else (CENTRAL_ON, CENTRAL_OFF)
    dep.gateway_config.write_text(text.replace(old, new))
    dep.admin(dep.gateway_config, "reload")


def _local(dep: Deployment) -> dict[str, Any]:
    return dep.admin(dep.gateway_config, "quarantine.list", {"limit": 1000})["data"]


def _central(dep: Deployment) -> list[dict[str, Any]]:
    data = dep.admin(dep.manager_config, "quarantine.list", {"limit": 1000})["data"]
    return data["messages"]


def _hold_locally(dep: Deployment, policy: int, legal: int) -> list[dict[str, Any]]:
    for n in range(policy):
        dep.send(subject=f"confidential plan {n}", body="numbers")
    for n in range(legal):
        dep.send(subject=f"legal hold {n}", body="contract")
    wait_for("the local quarantines to hold them",
             lambda: _local(dep)["total"] == policy + legal, timeout_s=60)
    return _local(dep)["messages"]


def _migrated(dep: Deployment, timeout_s: float = 90.0) -> dict[str, Any]:
    wait_for("the migration to complete",
             lambda: dep.admin(dep.manager_config, "pvo.migrate.status")["data"]
             .get("state") == "completed", timeout_s=timeout_s)
    return dep.admin(dep.manager_config, "pvo.migrate.status")["data"]


def _start(dep: Deployment) -> None:
    dep.start()
    dep.add_gateway_over_ssh()
    _set_mode(dep, centralized=False)


def _held_and_centralized(dep: Deployment, count: int) -> list[dict[str, Any]]:
    """Started, *count* messages held in the gateway's local Policy quarantine, then the
    gateway switched to centralized mode: ready to migrate."""
    _start(dep)
    held = _hold_locally(dep, policy=count, legal=0)
    _set_mode(dep, centralized=True)
    return held


def test_custom_mapping_moves_everything_with_its_clocks_and_history(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    try:
        _start(dep)
        held = _hold_locally(dep, policy=3, legal=2)
        by_mid = {m["id"]: m for m in held}
        one = held[0]["id"]
        dep.admin(dep.gateway_config, "quarantine.delay", {"mid": one, "delay": "8h"})
        before = {m["id"]: m for m in _local(dep)["messages"]}

        # A gateway in local mode is refused, naming the rule and the machine.
        refused = dep.admin_error(dep.manager_config, "pvo.migrate", {"mode": "automatic"})
        assert (f'rule "a gateway is all local or all centralized": gateway {GATEWAY} is in '
                "local mode") in refused
        _set_mode(dep, centralized=True)

        dry = subprocess.run(
            [sys.executable, "-m", "pvoq", "cli", "-c", str(dep.manager_config), "pvo",
             "migrate", "--mode", "custom", "--map", f"Policy@{GATEWAY}=Policy",
             "--map", f"Legal@{GATEWAY}=new", "--dry-run"],
            capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, dry.stderr
        assert f"{GATEWAY} (5 messages)" in dry.stdout
        assert "Policy (3) -> Policy\n" in dry.stdout
        assert "Legal (2) -> Legal [new]" in dry.stdout
        assert "(dry run: nothing was changed)" in dry.stdout
        assert _local(dep)["total"] == 5 and _central(dep) == []

        dep.admin(dep.manager_config, "pvo.migrate", {
            "mode": "custom", "maps": [f"Policy@{GATEWAY}=Policy", f"Legal@{GATEWAY}=new"],
            "notify": "ops@example.com"})
        status = _migrated(dep)
        rows = status["gateways"][GATEWAY]["rows"]
        assert sorted((r["local"], r["target"], r["moved"], r["total"]) for r in rows) == [
            ("Legal", "Legal", 2, 2), ("Policy", "Policy", 3, 3)]
        assert _local(dep)["total"] == 0

        central = _central(dep)
        assert sorted(m["origin_mid"] for m in central) == sorted(by_mid)
        for m in central:
            local = before[m["origin_mid"]]
            assert m["received_at"] == local["received_at"]
            mine = {q["quarantine"]: q for q in m["quarantines"]}
            theirs = {q["quarantine"]: q for q in local["quarantines"]}
            assert set(mine) == set(theirs)
            for name, q in mine.items():
                assert q["reason"] == theirs[name]["reason"]
                assert q["received_at"] == theirs[name]["received_at"]
                assert q["scheduled_exit"] == theirs[name]["scheduled_exit"]
        configured = dep.admin(dep.manager_config, "quarantine.definitions")["data"]
        assert "Legal" in [q["name"] for q in configured["quarantines"]]

        trail = dep.admin(dep.manager_config, "audit.tail", {"limit": 100})["data"]
        moved = [m for r in trail if r["action"] == "migrate-in" for m in r["detail"]["migrated"]]
        assert sorted(m["origin_mid"] for m in moved) == sorted(by_mid)
        delayed = next(m for m in moved if m["origin_mid"] == one)
        assert "delay" in [h["action"] for h in delayed["history"]]
        # The chain verifies over every record, the migration's among them (one a batch: the
        # transfers of a connection are pipelined, so a batch may carry several).
        records = [r for r in trail if r["action"] == "migrate-in"]
        assert dep.admin(dep.manager_config, "audit.verify")["data"]["records"] >= len(records)

        logs = dep.mail_logs("manager")
        assert any(f'migrated from local quarantine "Legal" on {GATEWAY}' in line
                   for line in logs)
        assert any("PVO migration" in line and "completed: 5 messages" in line
                   for line in logs)
        wait_for("the completion mail", lambda: any(
            b"Subject: PVO migration" in raw and env.get("rcpt_tos") == ["ops@example.com"]
            for env, raw in dep.delivered()), timeout_s=60)
    finally:
        dep.stop_all()


def test_sigkill_of_both_sides_mid_migration_ends_with_every_message_once(
        tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    try:
        held = _held_and_centralized(dep, 300)
        dep.admin(dep.manager_config, "pvo.migrate", {"mode": "automatic"})
        wait_for("the first messages to move", lambda: len(_central(dep)) > 0,
                 timeout_s=60, interval_s=0.02)
        # Freeze the manager mid-migration (transactions in flight), then kill both sides.
        os.kill(dep.procs["manager"].pid, signal.SIGSTOP)
        assert _local(dep)["total"] > 0, "the migration must be under way when both die"
        dep.stop("gateway", sig=signal.SIGKILL)
        dep.stop("manager", sig=signal.SIGKILL)
        dep.start_manager()
        dep.start_gateway()  # both resume the plan they kept
        _migrated(dep, timeout_s=120)
        central = _central(dep)
        origins = [m["origin_mid"] for m in central]
        assert sorted(origins) == sorted(m["id"] for m in held)  # each exactly once
        assert _local(dep)["total"] == 0
    finally:
        dep.stop_all()


def test_a_cluster_breaking_the_rules_is_refused_naming_each(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    text = dep.gateway_config.read_text()
    start = text.index("  <content_filters>")
    end = text.index("</content_filters>") + len("</content_filters>")
    filters = text[start:end].strip()
    cluster = f"""  <cluster>
    <cluster_name>east</cluster_name>
    <this_machine>{GATEWAY}</this_machine>
    <machine><machine_name>{GATEWAY}</machine_name>
      <settings>{filters}</settings></machine>
    <machine><machine_name>gw2.pvoq.test</machine_name></machine>
  </cluster>
"""
    dep.gateway_config.write_text(text.replace("</config>", cluster + "</config>"))
    try:
        dep.start()
        dep.add_gateway_over_ssh()
        refused = dep.admin_error(dep.manager_config, "pvo.migrate",
                                  {"mode": "automatic", "dry_run": True})
        assert ('rule "every machine of the cluster is registered on the manager first": '
                "machine gw2.pvoq.test of cluster east is not registered") in refused
        assert ('rule "PVO settings and quarantining filters sit at one level, no override '
                f'below": cluster east: <content_filters> set at cluster is overridden at '
                f"machine {GATEWAY}") in refused
        assert any("PVO migration refused: rule" in line for line in dep.mail_logs("manager"))
    finally:
        dep.stop_all()


def test_cancel_from_the_cli_stops_the_gateway_and_a_new_plan_moves_the_rest(
        tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    try:
        # Enough that the push is still under way when the cancel (a new CLI process)
        # reaches the gateway, even on a loaded machine: 300 could all be moved first.
        held = _held_and_centralized(dep, 1000)   # the local listing gives 1,000 at most
        refused = subprocess.run(
            [sys.executable, "-m", "pvoq", "cli", "-c", str(dep.manager_config), "pvo",
             "migrate", "--cancel"], capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "no migration is running" in refused.stderr
        dep.admin(dep.manager_config, "pvo.migrate", {"mode": "automatic"})
        wait_for("the first messages to move", lambda: len(_central(dep)) > 0,
                 timeout_s=60, interval_s=0.02)
        cancel = subprocess.run(
            [sys.executable, "-m", "pvoq", "cli", "-c", str(dep.manager_config), "pvo",
             "migrate", "--cancel"], capture_output=True, text=True, timeout=60)
        assert cancel.returncode == 0, cancel.stderr
        assert "cancelled" in cancel.stdout
        wait_for("the cancellation to end on every gateway",
                 lambda: dep.admin(dep.manager_config, "pvo.migrate.status")["data"]
                 .get("state") == "cancelled", timeout_s=90)
        # Each message is in exactly one place: moved here, or still held on the gateway.
        moved = sorted(m["origin_mid"] for m in _central(dep))
        kept = sorted(m["id"] for m in _local(dep)["messages"])
        assert sorted(moved + kept) == sorted(m["id"] for m in held)
        gateway_state = dep.admin(dep.gateway_config, "pvo.local")["data"]["migration"]
        assert gateway_state["state"] == "cancelled"
        assert any("PVO migration" in line and "cancelled:" in line
                   and f"{len(kept)} left in their local quarantines" in line
                   for line in dep.mail_logs("manager"))
        assert any("PVO migration" in line and "cancelled by" in line
                   and f"{len(kept)} left in the local quarantines" in line
                   for line in dep.mail_logs("gateway"))

        # The cancelled plan has ended: a new one may start, and moves what was left.
        dep.admin(dep.manager_config, "pvo.migrate", {"mode": "automatic"})
        # Up to a thousand messages to move: a deadline, not a speed (migration ran at
        # 38 msgs/s at load 19; a full suite on two cores can be slower still).
        _migrated(dep, timeout_s=300.0)
        assert sorted(m["origin_mid"] for m in _central(dep)) == sorted(m["id"] for m in held)
        assert _local(dep)["total"] == 0
    finally:
        dep.stop_all()
