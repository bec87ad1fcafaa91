"""The migration wizard's decisions: the rules, the plan and its tree, the audit records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pvoq.config.loader import load_config
from pvoq.config.template import ApplianceSpec
from pvoq.deploy import init_appliance
from pvoq.manager.migration import (
    MigrationError,
    PlanRow,
    audit_hook,
    build_plan,
    check_rules,
    notice_entry,
    parse_maps,
    render_tree,
)
from pvoq.quarantine.arrivals import Arrival


@pytest.fixture
def config(tmp_path: Path) -> Any:
    path = init_appliance(tmp_path / "m", ApplianceSpec(
        role="manager", hostname="mgr.test", serial="M1",
        gateways=[("gw1.test", "127.0.0.1", 7025), ("gw2.test", "127.0.0.1", 7026)]),
        ca_dir=tmp_path / "ca")
    return load_config(path)


def survey(mode: str = "centralized", quarantines: tuple[tuple[str, int], ...] = (),
           cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"mode": mode, "cluster": cluster,
            "quarantines": [{"name": n, "count": c, "bytes": c * 100} for n, c in quarantines]}


def test_each_rule_is_named_with_the_machine(config: Any) -> None:
    cluster = {"name": "east", "machines": ["gw1.test", "gw2.test", "gw3.test"],
               "levels": {"pvo_quarantines": ["cluster", "machine gw2.test"],
                          "content_filters": ["group dc1"]},
               "interface_problems": ["machine gw3.test lacks interface 'pvo' named for PVO "
                                      "at cluster level (its interfaces: 'data')"]}
    problems = check_rules(config, {"gw1.test": survey("local", cluster=cluster),
                                    "gw2.test": survey(cluster=cluster)})
    assert problems == [
        'rule "a gateway is all local or all centralized": gateway gw1.test is in local mode: '
        "run `pvoq cli pvo enable` on it first",
        'rule "every machine of the cluster is registered on the manager first": machine '
        "gw3.test of cluster east is not registered on this manager "
        "(<pvo_quarantines><gateways>)",
        'rule "PVO settings and quarantining filters sit at one level, no override below": '
        "cluster east: <pvo_quarantines> set at cluster is overridden at machine gw2.test",
        'rule "PVO settings and quarantining filters sit at one level, no override below": '
        "cluster east: the sections are at different levels (<content_filters> at group "
        "level, <pvo_quarantines> at cluster level)",
        'rule "the PVO interface exists on every machine": cluster east: machine gw3.test '
        "lacks interface 'pvo' named for PVO at cluster level (its interfaces: 'data')"]
    fine = {"name": "west", "machines": ["gw1.test", "gw2.test"],
            "levels": {"pvo_quarantines": ["cluster"], "content_filters": ["cluster"]},
            "interface_problems": []}
    assert check_rules(config, {"gw1.test": survey(cluster=fine),
                                "gw2.test": survey(cluster=fine)}) == []


def test_automatic_merges_by_name_and_creates_what_is_missing() -> None:
    surveys = {"gw1.test": survey(quarantines=(("Policy", 3), ("Legal", 2))),
               "gw2.test": survey(quarantines=(("Legal", 1),))}
    rows = build_plan("automatic", surveys, {"Policy", "Virus", "Outbreak"}, {})
    assert rows == [PlanRow("gw1.test", "Policy", 3, 300, "Policy", False),
                    PlanRow("gw1.test", "Legal", 2, 200, "Legal", True),
                    PlanRow("gw2.test", "Legal", 1, 100, "Legal", True)]
    assert render_tree(rows) == (
        "gw1.test (5 messages)\n"
        "  |-- Policy (3) -> Policy\n"
        "  `-- Legal (2) -> Legal [new]\n"
        "gw2.test (1 messages)\n"
        "  `-- Legal (1) -> Legal [new]")


def test_custom_takes_the_maps_and_refuses_what_it_cannot_do() -> None:
    surveys = {"gw1.test": survey(quarantines=(("Policy", 3), ("Legal", 2)))}
    central = {"Policy", "Compliance"}
    maps = parse_maps(["Policy@GW1.test=Compliance", "Legal@gw1.test=new"])
    rows = build_plan("custom", surveys, central, maps)
    assert [(r.local, r.target, r.new) for r in rows] == [("Policy", "Compliance", False),
                                                          ("Legal", "Legal", True)]
    with pytest.raises(MigrationError, match="no mapping for Legal@gw1.test"):
        build_plan("custom", surveys, central, parse_maps(["Policy@gw1.test=Policy"]))
    with pytest.raises(MigrationError, match="no central quarantine 'Nope'"):
        build_plan("custom", surveys, central,
                   parse_maps(["Policy@gw1.test=Nope", "Legal@gw1.test=new"]))
    with pytest.raises(MigrationError, match="a central quarantine 'Policy' exists"):
        build_plan("custom", surveys, central,
                   parse_maps(["Policy@gw1.test=new", "Legal@gw1.test=new"]))
    with pytest.raises(MigrationError, match="holds no local quarantine 'Spam'"):
        build_plan("custom", surveys, central, parse_maps(["Spam@gw1.test=Policy"]))
    with pytest.raises(MigrationError, match="--map is for --mode custom"):
        build_plan("automatic", surveys, central, maps)
    with pytest.raises(MigrationError, match="expected LOCAL@GATEWAY=CENTRAL"):
        parse_maps(["Policy=Compliance"])
    with pytest.raises(MigrationError, match="mapped twice"):
        parse_maps(["P@g=a", "P@G=b"])


def test_the_tree_shows_hostile_names_escaped() -> None:
    tree = render_tree([PlanRow("gw1.test", "evil\r\nInjected: line", 1, 1, "X", True)])
    assert "\r" not in tree and "\\r\\nInjected" in tree


def test_the_audit_hook_records_migrated_arrivals_only() -> None:
    calls: list[tuple[Any, ...]] = []

    def append(*args: Any, conn: Any = None) -> int:
        calls.append((*args, conn))
        return len(calls)
    meta = {"kind": "migration", "origin": {"hostname": "gw1.test", "mid": 7},
            "migration": {"plan": "p1", "held": [{"local": "Legal", "target": "Compliance"}],
                          "audit": [{"action": "delay"}]}}
    hook = audit_hook(append)
    hook("conn", [Arrival(11, meta, b"", "10.0.0.1", "s"),
                  Arrival(12, {"kind": "quarantine"}, b"", "10.0.0.1", "s"),
                  Arrival(13, {**meta, "origin": {"hostname": "gw1.test", "mid": 8}}, b"",
                          "10.0.0.1", "s")])
    moved = {"origin_mid": 7, "plan": "p1",
             "quarantines": [{"from": "Legal", "to": "Compliance"}],
             "history": [{"action": "delay"}]}
    assert calls == [("gw1.test", "cpq 10.0.0.1", "migrate-in",
                      {"mids": [11, 13], "migrated": [{"mid": 11, **moved},
                                                      {"mid": 13, **moved, "origin_mid": 8}]},
                      "conn")]
    calls.clear()
    hook("conn", [Arrival(12, {"kind": "quarantine"}, b"", "10.0.0.1", "s")])
    assert calls == []


def test_the_notice_is_a_mail_to_the_address() -> None:
    entry, body = notice_entry(mid=5, hostname="mgr.test", address="ops@example.com",
                               subject="PVO migration m1 completed", text="done")
    assert entry.recipients[0].address == "ops@example.com"
    assert entry.recipients[0].host == "example.com"
    assert b"Subject: PVO migration m1 completed" in body and b"done" in body
