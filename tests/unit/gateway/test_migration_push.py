"""The gateway's migration push: each held message reaches the manager once, and only a
message the manager acknowledged leaves the local quarantines."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from pvoq.admin.protocol import CommandError
from pvoq.cpq.metadata import decode_transfer
from pvoq.cpq.transfer import MigrationTransfer
from pvoq.gateway import Gateway
from pvoq.gateway.migration import GatewayMigrationCommands, LocalPlan, Migrator
from pvoq.quarantine.export import export_message, migration_arrival
from pvoq.quarantine.settings import QuarantineSettings, merge_settings
from pvoq.quarantine.store import QuarantineStore
from pvoq.remote.commands import encode_plan_arg
from pvoq.smtp.client import DeliveryError, Reply


def _meta(n: int, quarantine: str) -> dict[str, Any]:
    return {"v": 1, "kind": "quarantine", "transfer_id": f"l-SN-{n}",
            "origin": {"hostname": "gw.test", "serial": "SN", "mid": n},
            "sender": "alice@example.org", "recipients": [{"rid": 0, "address": "b@example.com"}],
            "quarantines": [{"name": quarantine, "reason": f"content filter:r{n}",
                             "stage": "content_filters"}], "received": 1.0, "size": 0}


def _fill(store: QuarantineStore, n: int, quarantine: str = "Policy") -> list[int]:
    body = b"Subject: held\r\n\r\nbody\r\n"
    for mid in range(1, n + 1):
        store.add(mid=mid, meta=_meta(mid, quarantine), body=body, origin_ip="10.0.0.9",
                  subject="held")
    return list(range(1, n + 1))


class FakeManager:
    """The manager's end: stores what it is sent (as its handler does), can fail."""

    def __init__(self, tmp: Path) -> None:
        self.store = QuarantineStore(f"sqlite:///{tmp / 'central.db'}", tmp / "central",
                                     settings=merge_settings([QuarantineSettings("Legal", 60.0)]))
        self.next_mid = 1000
        self.fail_after: int | None = None  # the link drops after this many transactions
        self.refuse: set[int] = set()        # local MIDs answered 451
        self.sent = 0
        self.after_send: Any = None          # called after each stored transfer
        self.in_flight = 1                   # as to a manager without CHUNKING

    def connection(self) -> FakeConnection:
        return FakeConnection(self)


class FakeConnection:
    def __init__(self, manager: FakeManager) -> None:
        self.manager = manager
        self.in_flight = manager.in_flight  # transfers under way at once on the connection

    async def open(self, host: str, port: int) -> None:
        pass

    async def send(self, *, mid: int, sender: str, recipients: list[tuple[int, str]],
                   body: bytes, extra: list[str], start_note: str = "",
                   done_note: str = "") -> dict[int, Reply]:
        m = self.manager
        await asyncio.sleep(0)  # the transfers under way interleave
        if m.fail_after is not None and m.sent >= m.fail_after:
            m.fail_after = None
            raise DeliveryError("connection lost during delivery: reset")
        m.sent += 1
        if mid in m.refuse:
            return {r: Reply(451, "4.3.0 try later") for r, _ in recipients}
        transfer = decode_transfer([line.removeprefix("XCPQ META ") for line in extra])
        assert isinstance(transfer, MigrationTransfer)
        m.next_mid += 1
        stored, _ = m.store.add_many([migration_arrival(transfer, m.next_mid, body,
                                                        "127.0.0.1", "held")])[0]
        if m.after_send is not None:
            m.after_send()
        return {r: Reply(250, f"2.0.0 Ok: migrated as MID {stored}") for r, _ in recipients}

    async def close(self) -> None:
        pass


def _migrator(gateway: Gateway, manager: FakeManager, mode: str = "centralized") -> Migrator:
    return Migrator(data_dir=gateway.config.data_dir, config=lambda: gateway.config,
                    store=lambda: gateway.local.store, mode=lambda: mode,
                    connect=manager.connection,  # type: ignore[arg-type,return-value]
                    maillog=gateway.maillog, record=gateway.local.service.audit.append,
                    connections=3)


async def _until_done(migrator: Migrator, limit_s: float = 20.0) -> None:
    async with asyncio.timeout(limit_s):
        while migrator.plan is None or not migrator.plan.completed:
            await asyncio.sleep(0.02)


def _origins(store: QuarantineStore) -> list[int]:
    rows, _ = store.list(limit=1000)
    return sorted(r["origin_mid"] for r in rows)


@pytest.mark.parametrize("in_flight", [1, 8], ids=["one-at-a-time", "pipelined"])
def test_every_held_message_moves_once_despite_a_dropped_link_and_a_refusal(
        gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        in_flight: int) -> None:
    monkeypatch.setattr("pvoq.gateway.migration.RETRY_MIN_S", 0.01)
    mids = _fill(gateway.local.store, 70)
    manager = FakeManager(tmp_path)
    manager.fail_after, manager.refuse, manager.in_flight = 40, {5}, in_flight
    migrator = _migrator(gateway, manager)

    async def run() -> None:
        status = migrator.start({"id": "plan-1", "manager": "mgr.test",
                                 "targets": {"Policy": "Legal"}})
        assert status["quarantines"][0]["total"] == 70
        await asyncio.sleep(0.05)
        manager.refuse = set()  # the manager takes it at the next pass
        await _until_done(migrator)
    asyncio.run(run())
    assert _origins(manager.store) == mids
    assert gateway.local.store.held_count() == 0
    status = migrator.status()
    assert status is not None and status["state"] == "completed"
    assert status["quarantines"] == [{"local": "Policy", "target": "Legal", "total": 70,
                                      "moved": 70, "left": 0}]
    trail = gateway.local.service.audit.tail(100)
    assert sorted(m for r in trail if r["action"] == "migrate" for m in r["detail"]["mids"]) \
        == mids
    assert json.loads((gateway.config.data_dir / "migration" / "plan.json").read_text()
                      )["completed"]
    manager.store.close()


def test_a_restart_resumes_the_plan_and_a_resend_is_not_a_second_copy(
        gateway: Gateway, tmp_path: Path) -> None:
    mids = _fill(gateway.local.store, 20)
    manager = FakeManager(tmp_path)
    # A crash after the manager's 250 and before the local removal: stored there, still here.
    plan = LocalPlan("plan-2", "mgr.test", {"Policy": "Legal"}, {"Policy": 20}, 1.0)
    first = _migrator(gateway, manager)
    first.plan = plan
    first._save()
    for mid in mids[:5]:
        transfer, body = export_message(gateway.local.store, mid, targets=plan.targets,
                                        hostname="gw.test", serial=gateway.config.serial_number,
                                        plan=plan.id)  # type: ignore[misc]
        manager.store.add_many([migration_arrival(transfer, 500 + mid, body, "x", "held")])

    async def run() -> None:
        again = _migrator(gateway, manager)  # a new process: the plan comes from the file
        assert again.plan is not None and again.plan.id == "plan-2"
        again.resume()
        await _until_done(again)
    asyncio.run(run())
    assert _origins(manager.store) == mids  # each once
    assert gateway.local.store.held_count() == 0
    manager.store.close()


def test_a_gateway_in_local_mode_refuses_naming_the_rule(gateway: Gateway,
                                                         tmp_path: Path) -> None:
    _fill(gateway.local.store, 1)
    commands = GatewayMigrationCommands(_migrator(gateway, FakeManager(tmp_path), "local"))
    arg = encode_plan_arg({"id": "p", "manager": "m", "targets": {"Policy": "Legal"}})
    with pytest.raises(CommandError, match='rule "a gateway is all local or all centralized"'
                                           ": gateway gw.test is in local mode"):
        asyncio.run(commands.start({"argv": [arg]}))


def test_a_malformed_plan_is_refused_naming_the_field(gateway: Gateway, tmp_path: Path) -> None:
    commands = GatewayMigrationCommands(_migrator(gateway, FakeManager(tmp_path)))
    with pytest.raises(CommandError, match="field targets"):
        asyncio.run(commands.start({"plan": {"id": "p", "manager": "m", "targets": []}}))
    with pytest.raises(CommandError, match="not base64url JSON"):
        asyncio.run(commands.start({"argv": ["%%%"]}))
    with pytest.raises(CommandError, match="no local quarantine 'Nope'"):
        asyncio.run(commands.start({"plan": {"id": "p", "manager": "m",
                                             "targets": {"Nope": "Legal"}}}))


def test_pvo_local_says_mode_counts_and_sizes(gateway: Gateway, tmp_path: Path) -> None:
    _fill(gateway.local.store, 3, "Policy")
    commands = GatewayMigrationCommands(_migrator(gateway, FakeManager(tmp_path)))
    data = asyncio.run(commands.local({}))["data"]
    assert data["mode"] == "centralized" and data["cluster"] is None
    assert data["quarantines"] == [{"name": "Policy", "count": 3,
                                    "bytes": 3 * len(b"Subject: held\r\n\r\nbody\r\n")}]
    assert data["migration"] is None


def test_a_cancel_stops_the_push_and_every_message_is_in_one_place_only(
        gateway: Gateway, tmp_path: Path) -> None:
    mids = _fill(gateway.local.store, 200)
    manager = FakeManager(tmp_path)
    migrator = _migrator(gateway, manager)
    told: list[dict[str, Any]] = []

    def cancel_once() -> None:
        if manager.sent == 40 and not told:
            told.append(migrator.cancel("plan-c"))
    manager.after_send = cancel_once

    async def run() -> None:
        migrator.start({"id": "plan-c", "manager": "mgr.test", "targets": {"Policy": "Legal"}})
        async with asyncio.timeout(20):
            while migrator.running:
                await asyncio.sleep(0.02)
    asyncio.run(run())
    assert told and told[0]["state"] in ("cancelling", "cancelled")
    moved = _origins(manager.store)
    rows, _ = gateway.local.store.list(limit=1000)
    kept = sorted(r["id"] for r in rows)
    assert 40 <= len(moved) < 200  # the transfers under way finished, then nothing more
    assert sorted(moved + kept) == mids  # each message in exactly one place
    assert not set(moved) & set(kept)
    status = migrator.status()
    assert status is not None and status["state"] == "cancelled"
    assert status["quarantines"][0]["moved"] == len(moved)
    assert status["quarantines"][0]["left"] == len(kept)
    saved = json.loads((gateway.config.data_dir / "migration" / "plan.json").read_text())
    assert saved["cancelled"] and not saved["completed"]
    gateway.maillog.flush()
    logs = gateway.maillog.path.read_text()
    assert (f"PVO migration plan-c cancelled by mgr.test: {len(moved)} messages moved, "
            f"{len(kept)} left in the local quarantines") in logs

    async def restart() -> None:  # a new process: the cancelled plan is not resumed
        again = _migrator(gateway, manager)
        again.resume()
        assert not again.running
        await asyncio.sleep(0.1)
    asyncio.run(restart())
    assert gateway.local.store.held_count() == len(kept)
    manager.store.close()


def test_cancel_of_a_plan_this_gateway_never_took_changes_nothing(
        gateway: Gateway, tmp_path: Path) -> None:
    _fill(gateway.local.store, 2)
    commands = GatewayMigrationCommands(_migrator(gateway, FakeManager(tmp_path)))
    data = asyncio.run(commands.cancel({"argv": ["plan-z"]}))["data"]
    assert data == {"id": "plan-z", "state": "not started"}
    assert gateway.local.store.held_count() == 2
    with pytest.raises(CommandError, match="one argument: the plan id"):
        asyncio.run(commands.cancel({"argv": []}))
