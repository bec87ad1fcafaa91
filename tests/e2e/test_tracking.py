"""Tracking follows a released message through every hop (real gateway, manager, sink, SSH)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from logsubsetup import cli, find, subscribed_deployment, tracked

from pvoq.testing.localdeploy import GATEWAY, MANAGER, Deployment, wait_for


@pytest.fixture
def subscribed(tmp_path: Path) -> Iterator[Deployment]:
    """A deployment whose manager reaches its gateway over SSH (so it subscribes to its log)."""
    with subscribed_deployment(tmp_path) as dep:
        yield dep


def test_track_by_subject_shows_every_hop_of_a_released_message(
        subscribed: Deployment) -> None:
    dep = subscribed
    subject = "Confidential tracking e2e"
    dep.send(subject=subject, body="caught by the content filter, then released")
    record = wait_for("the message in quarantine", lambda: next(iter(dep.quarantined()), None))
    dep.admin(dep.manager_config, "quarantine.release", {"mid": record["id"]})
    wait_for("the released message at the sink", lambda: len(dep.delivered()) == 1)

    # what each appliance's own log says, to compare with what tracking shows
    gw = dep.mail_logs("gateway")
    mid = int(find(gw, r'MID (\d+) Subject "Confidential tracking e2e"').group(1))
    icid = int(find(gw, rf"Start MID {mid} ICID (\d+)$").group(1))
    cpq_dcid = int(find(gw, rf"Delivery start DCID (\d+) MID {mid} .*Centralized").group(1))
    new_mid = int(find(gw, rf"MID (\d+) received from the SMA .*MID originally {mid}\)")
                  .group(1))
    down_dcid = int(find(gw, rf"Delivery start DCID (\d+) MID {new_mid} ").group(1))
    manager_mid = record["id"]

    journeys = wait_for("the whole path in the tracking index",
                        lambda: tracked(dep, "tracking e2e"), timeout_s=60)
    (journey,) = journeys
    g = journey["gateway"]
    assert (g["source"], g["mid"], g["icid"]) == (GATEWAY, mid, icid)
    assert g["subject"] == subject and g["recipients"] == ["bob@example.com"]
    assert any(v.endswith("antivirus negative") for v in g["verdicts"])
    assert any("content filters matched: content filter:confidential_subject" in v
               for v in g["verdicts"])
    assert any("Outbreak Filters: verdict negative" in v for v in g["verdicts"])
    (cpq,) = g["deliveries"]
    assert (cpq["dcid"], cpq["destination"]) == (cpq_dcid, "the.cpq.host")
    assert cpq["reply"].startswith("250 ") and cpq["done"]
    (m,) = journey["manager"]
    assert (m["source"], m["mid"]) == (MANAGER, manager_mid)
    assert m["origin"] == {"host": GATEWAY, "mid": mid}
    assert any('quarantined to "Policy"' in q for q in m["quarantine"])
    assert any("released" in q for q in m["quarantine"])
    (back,) = m["deliveries"]
    assert back["destination"] == "the.cpq.release.host"
    assert back["reply"].startswith("250 ")
    (r,) = journey["releases"]
    assert (r["source"], r["mid"], r["origin"]) == (GATEWAY, new_mid, {"host": GATEWAY,
                                                                        "mid": mid})
    (down,) = r["deliveries"]
    assert down["dcid"] == down_dcid and down["port"] == dep.ports["sink"]
    assert down["reply"].startswith("250 2.0.0") and down["done"]
    texts = [line["text"] for line in journey["lines"]]
    assert f"Start MID {mid} ICID {icid}" in texts
    assert any(f"(MID originally {mid})" in t for t in texts)

    # the same through the command line, in one view, and as JSON
    shown = cli(dep.manager_config, "track", "--subject", "tracking e2e")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    for expected in (f"Gateway {GATEWAY}: ICID {icid}, MID {mid}",
                     "Verdicts: antivirus negative",
                     f"Delivery: DCID {cpq_dcid} to the.cpq.host",
                     f"Manager {MANAGER}: MID {manager_mid}",
                     'quarantined to "Policy"',
                     f"Release on {GATEWAY}: MID {new_mid} (MID originally {mid})",
                     f"Delivery: DCID {down_dcid} to ", ": 250 2.0.0"):
        assert expected in out, (expected, out)
    as_json = cli(dep.manager_config, "track", "--mid", str(mid), "--gateway", GATEWAY,
                   "--json")
    assert json.loads(as_json.stdout)[0]["releases"][0]["mid"] == new_mid
    by_manager = cli(dep.manager_config, "track", "--manager-mid", str(manager_mid), "--json")
    assert json.loads(by_manager.stdout)[0]["gateway"]["mid"] == mid
    nothing = cli(dep.manager_config, "track", "--sender", "nobody@nowhere.example")
    assert nothing.returncode == 0 and "No messages found." in nothing.stdout
