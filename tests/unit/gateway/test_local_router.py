"""Local mode in the router: caught mail held in the gateway's own quarantines, the decision
local/central taken once per message, and the held messages' crash windows."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from pvoq.config.model import THE_CPQ_HOST
from pvoq.gateway import Gateway
from pvoq.gateway.local import centralized, local_transfer_id
from pvoq.scan.verdict import QUARANTINE, ScanResult, Verdict
from pvoq.spool.store import Entry, Recipient

BODY = b"From: a@sender.example\r\nSubject: hi\r\n\r\nhello\r\n"
POLICY = Verdict("message_filters", "Policy", "message filter:hold_it")
VIRUS = Verdict("antivirus", "Virus", "a/v verdict:VIRAL Eicar-Test-Signature")
COPY = Verdict("message_filters", "Outbreak", "message filter:copy_it")


def set_enabled(gw: Gateway, enabled: bool) -> None:
    """What a reload does: the configuration in force replaced in one assignment."""
    gw.config = dataclasses.replace(gw.config,
                                    pvo=dataclasses.replace(gw.config.pvo, enabled=enabled))


def incoming(gw: Gateway) -> Entry:
    entry = Entry(mid=gw.ids.next("mid"), sender="a@sender.example",
                  recipients=[Recipient(0, "x@one.example"), Recipient(1, "y@two.example")],
                  received=1.0, size=len(BODY), icid=7, peer="192.0.2.7",
                  meta={"subject": "hi"})
    gw.spool.put(entry, BODY)
    return entry


def log_of(gw: Gateway) -> str:
    gw.maillog.flush()
    return gw.maillog.path.read_text()


def caught(*verdicts: Verdict, duplicates: list[Verdict] | None = None) -> ScanResult:
    return ScanResult(action=QUARANTINE, verdicts=list(verdicts), duplicates=duplicates or [])


def test_the_mode_follows_the_flag_and_the_managers(gateway: Gateway) -> None:
    assert centralized(gateway.config)
    set_enabled(gateway, False)
    assert not centralized(gateway.config) and gateway.local.mode() == "local"
    no_manager = dataclasses.replace(gateway.config.pvo, enabled=True, managers=(),
                                     manager_address=None)
    assert not centralized(dataclasses.replace(gateway.config, pvo=no_manager))


def test_local_mode_holds_caught_mail_here_and_removes_it_from_the_spool(
        gateway: Gateway) -> None:
    set_enabled(gateway, False)
    entry = incoming(gateway)
    asyncio.run(gateway.router.route(entry, caught(POLICY, VIRUS)))
    assert entry.mid not in gateway.spool and entry.mid not in gateway.queues.entries
    record = gateway.local.store.get(entry.mid)
    assert record is not None
    assert sorted(q["quarantine"] for q in record["quarantines"]) == ["Policy", "Virus"]
    assert record["transfer_id"] == local_transfer_id("SN", entry.mid)
    assert record["origin_host"] == "gw.test" and record["origin_ip"] == "127.0.0.1"
    assert gateway.local.store.read_body(entry.mid) == BODY
    assert gateway.local.held_count() == 1
    log = log_of(gateway)
    assert f'MID {entry.mid} quarantined to "Policy" (message filter:hold_it)' in log
    assert f'MID {entry.mid} quarantined to "Virus" (a/v verdict:VIRAL' in log
    assert "enqueued for transfer" not in log


def test_routing_again_after_a_crash_stores_once(gateway: Gateway) -> None:
    """Stored, then a crash before the spool entry went: the entry is routed again."""
    set_enabled(gateway, False)
    entry = incoming(gateway)
    asyncio.run(gateway.router.route(entry, caught(POLICY)))
    gateway.spool.put(entry, BODY)  # the entry the crash left behind
    asyncio.run(gateway.router.route(entry, caught(POLICY)))
    assert entry.mid not in gateway.spool
    assert gateway.local.held_count() == 1
    assert f"MID {entry.mid} already held in the local quarantines" in log_of(gateway)


def test_the_recovery_drops_entries_already_held(gateway: Gateway) -> None:
    set_enabled(gateway, False)
    held, other = incoming(gateway), incoming(gateway)
    asyncio.run(gateway.router.route(held, caught(POLICY)))
    gateway.spool.put(held, BODY)
    assert gateway.local.recover([held, other]) == [other]
    assert held.mid not in gateway.spool and other.mid in gateway.spool


def flip_on_first(gw: Gateway, name: str, enabled: bool) -> list[str]:
    """Switch the mode inside the first call of the spool's *name* (an await of route)."""
    seen: list[str] = []
    original: Callable[..., Awaitable[Any]] = getattr(gw.spool, name)

    async def flipping(*args: Any, **kwargs: Any) -> Any:
        if not seen:
            seen.append(name)
            set_enabled(gw, enabled)
        return await original(*args, **kwargs)
    setattr(gw.spool, name, flipping)
    return seen


def test_a_switch_to_centralized_mid_routing_leaves_the_message_wholly_local(
        gateway: Gateway) -> None:
    set_enabled(gateway, False)
    entry = incoming(gateway)
    seen = flip_on_first(gateway, "update_async", True)  # the duplicate's MID plan
    asyncio.run(gateway.router.route(entry, caught(POLICY, VIRUS, duplicates=[COPY])))
    assert seen and centralized(gateway.config)
    assert entry.mid not in gateway.spool and not gateway.queues.entries
    held = gateway.local.store.get(entry.mid)
    assert held is not None and len(held["quarantines"]) == 2
    assert gateway.local.held_count() == 2  # the message and its duplicate-quarantine copy
    assert "enqueued for transfer" not in log_of(gateway)
    # the next message goes to the manager
    after = incoming(gateway)
    asyncio.run(gateway.router.route(after, caught(POLICY)))
    assert {r.host for r in gateway.queues.entries[after.mid].recipients} == {THE_CPQ_HOST}
    assert gateway.local.store.get(after.mid) is None


def test_a_switch_to_local_mid_routing_leaves_the_message_wholly_central(
        gateway: Gateway) -> None:
    entry = incoming(gateway)
    seen = flip_on_first(gateway, "update_async", False)
    asyncio.run(gateway.router.route(entry, caught(POLICY, VIRUS, duplicates=[COPY])))
    assert seen and not centralized(gateway.config)
    assert gateway.local.held_count() == 0
    routed = gateway.queues.entries[entry.mid]
    assert {r.host for r in routed.recipients} == {THE_CPQ_HOST}
    assert [q["name"] for q in routed.meta["cpq"]["quarantines"]] == ["Policy", "Virus"]
    copies = [e for m, e in gateway.queues.entries.items() if m != entry.mid]
    assert [c.meta["duplicate_of"] for c in copies] == [entry.mid]
    assert {r.host for r in copies[0].recipients} == {THE_CPQ_HOST}


def test_a_centralized_gateway_builds_no_local_store_until_one_is_needed(
        gateway: Gateway) -> None:
    """The database layer stays unloaded (memory) while nothing is held locally."""
    assert not gateway.local.built and not gateway.local.needed()
    assert gateway.local.held_count() == 0 and not gateway.local.built
    assert "quarantine.list" not in gateway.admin.commands
    assert not (gateway.config.data_dir / "quarantine.db").exists()
    set_enabled(gateway, False)
    entry = incoming(gateway)
    asyncio.run(gateway.router.route(entry, caught(POLICY)))
    assert gateway.local.built and "quarantine.list" in gateway.admin.commands
    assert (gateway.config.data_dir / "quarantine.db").exists()


def test_status_gauges_count_the_local_quarantines_once_in_use(gateway: Gateway) -> None:
    assert "messages_in_quarantine" not in gateway.status_gauges()
    set_enabled(gateway, False)
    asyncio.run(gateway.router.route(incoming(gateway), caught(POLICY, VIRUS)))
    gauges = gateway.status_gauges()
    assert gauges["messages_in_quarantine"] == 1  # one message, in two quarantines
    assert gauges["kilobytes_in_quarantine"] == len(BODY) // 1024
