"""Moving one held message between two stores: everything it carries arrives, once."""

from __future__ import annotations

from pathlib import Path

import pytest
from qhelpers import put

from pvoq.cpq.metadata import decode_transfer, encode_chunks
from pvoq.cpq.transfer import MetadataError, MigrationTransfer, parse_transfer
from pvoq.quarantine.audit import AuditTrail, open_key
from pvoq.quarantine.export import (
    audit_history,
    export_message,
    held_in,
    migration_arrival,
    remove_moved,
    transfer_id,
)
from pvoq.quarantine.settings import QuarantineSettings, merge_settings
from pvoq.quarantine.store import QuarantineStore


def _stores(tmp_path: Path, clock: object) -> tuple[QuarantineStore, QuarantineStore]:
    local = QuarantineStore(f"sqlite:///{tmp_path / 'local.db'}", tmp_path / "local",
                            node="gw", clock=clock,  # type: ignore[arg-type]
                            settings=merge_settings([QuarantineSettings("Legal", 86400.0)]))
    central = QuarantineStore(f"sqlite:///{tmp_path / 'central.db'}", tmp_path / "central",
                              node="mgr", settings=merge_settings(
                                  [QuarantineSettings("Compliance", 3600.0)]))
    return local, central


def test_a_migrated_message_keeps_reasons_clocks_and_history(tmp_path: Path, clock) -> None:
    local, central = _stores(tmp_path, clock)
    trail = AuditTrail(local.engine, clock, open_key(tmp_path / "audit.key")[0])
    trail.seal(rekey=False)
    mid = put(local, 7, ("Legal", "content filter:legal_words"), ("Policy", "msg filter:x"))
    local.delay(mid, 500.0, "Legal")
    trail.append("alice", "admin-socket", "delay", {"mid": mid, "quarantines": ["Legal"]})
    trail.append("bob", "admin-socket", "view", {"mid": 99})
    before = {q["quarantine"]: q for q in local.get(mid)["quarantines"]}  # type: ignore[index]

    history = audit_history(local, [mid])[mid]
    assert [r["action"] for r in history] == ["delay"]
    exported = export_message(local, mid, targets={"Legal": "Compliance"},
                              hostname="gw1.example.com", serial="SN1", plan="plan-1",
                              history=history)
    assert exported is not None
    transfer, body = exported
    assert transfer.transfer_id == transfer_id("SN1", mid)
    wire = decode_transfer(encode_chunks(transfer.to_json()))
    assert isinstance(wire, MigrationTransfer) and wire == transfer

    arrival = migration_arrival(wire, 5001, body, "10.0.0.1", "Q3 numbers")
    assert central.add_many([arrival]) == [(5001, False)]
    assert central.add_many([arrival]) == [(5001, True)]  # a resend: stored once
    got = central.get(5001)
    assert got is not None
    held = {q["quarantine"]: q for q in got["quarantines"]}
    assert sorted(held) == ["Compliance", "Policy"]
    assert held["Compliance"]["reason"] == "content filter:legal_words"
    assert held["Compliance"]["received_at"] == before["Legal"]["received_at"]
    assert held["Compliance"]["scheduled_exit"] == before["Legal"]["scheduled_exit"]
    assert held["Policy"]["scheduled_exit"] == before["Policy"]["scheduled_exit"]
    assert got["received_at"] == local.get(mid)["received_at"]  # type: ignore[index]
    assert got["meta"]["migration"]["audit"][0]["actor"] == "alice"
    assert central.read_body(5001) == body

    assert held_in(local, ["Legal", "Policy"]) == [mid]
    assert remove_moved(local, [mid]) == 1
    assert held_in(local, ["Legal", "Policy"]) == []
    assert local.held_count() == 0
    assert export_message(local, mid, targets={}, hostname="gw", serial="SN1",
                          plan="p") is None
    assert not (tmp_path / "local" / f"{mid}.eml").exists()
    local.close()
    central.close()


def test_the_batch_hook_runs_inside_the_transaction(tmp_path: Path, clock) -> None:
    local, central = _stores(tmp_path, clock)
    mid = put(local, 3, "Policy")
    transfer, body = export_message(local, mid, targets={}, hostname="gw", serial="S",
                                    plan="p")  # type: ignore[misc]
    seen: list[list[int]] = []

    def hook(conn: object, arrivals: object) -> None:
        seen.append([a.mid for a in arrivals])  # type: ignore[attr-defined]
        raise RuntimeError("the audit write failed")

    central.on_batch = hook
    with pytest.raises(RuntimeError):
        central.add_many([migration_arrival(transfer, 9, body, "10.0.0.1", "s")])
    assert seen == [[9]]
    assert central.get(9) is None  # rolled back with the hook
    central.on_batch = None
    assert central.add_many([migration_arrival(transfer, 9, body, "10.0.0.1", "s")]) == \
        [(9, False)]
    local.close()
    central.close()


def test_a_migration_transfer_is_checked_field_by_field(tmp_path: Path, clock) -> None:
    local, _ = _stores(tmp_path, clock)
    mid = put(local, 3, "Policy")
    transfer, _ = export_message(local, mid, targets={}, hostname="gw", serial="S",
                                 plan="p")  # type: ignore[misc]
    good = transfer.to_json()
    bad = dict(good, migration=dict(good["migration"], held=[]))
    with pytest.raises(MetadataError, match="migration.held is empty"):
        parse_transfer(bad)
    bad = dict(good, migration=dict(good["migration"], held=[
        dict(good["migration"]["held"][0], target="Elsewhere")]))
    with pytest.raises(MetadataError, match="'Elsewhere' is not in quarantines"):
        parse_transfer(bad)
    bad = dict(good, migration=dict(good["migration"], held=[
        dict(good["migration"]["held"][0], received_at="yesterday")]))
    with pytest.raises(MetadataError, match="migration.held\\[\\].received_at"):
        parse_transfer(bad)
    bad = dict(good, migration=dict(good["migration"], audit=["x"]))
    with pytest.raises(MetadataError, match="migration.audit"):
        parse_transfer(bad)
    local.close()
