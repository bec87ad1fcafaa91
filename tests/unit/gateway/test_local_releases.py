"""Releases from the gateway's local quarantines: spooled once, delivered by the gateway."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from pvoq.cpq.transfer import Origin, RescanAction, RescanNotice
from pvoq.gateway import Gateway
from pvoq.gateway.local import local_transfer_id, release_transfer_id
from pvoq.quarantine.roles import ADMIN, Caller
from pvoq.scan.verdict import QUARANTINE, ScanResult, Verdict
from pvoq.spool.store import INCOMING, Entry, Recipient

BODY = b"From: a@sender.example\r\nSubject: hi\r\n\r\nhello\r\n"
ADMIN_CALLER = Caller("admin", "test", ADMIN)


def held(gw: Gateway, *verdicts: Verdict) -> tuple[int, list[tuple[Entry, bytes]]]:
    """A local-mode gateway holding one message caught by *verdicts*; what it submits."""
    gw.config = dataclasses.replace(gw.config,
                                    pvo=dataclasses.replace(gw.config.pvo, enabled=False))
    submitted: list[tuple[Entry, bytes]] = []
    gw.local.releases.submit = lambda e, b: submitted.append((e, b))
    entry = Entry(mid=gw.ids.next("mid"), sender="a@sender.example",
                  recipients=[Recipient(0, "x@one.example")], received=1.0, size=len(BODY),
                  icid=7, peer="192.0.2.7", meta={"subject": "hi"})
    gw.spool.put(entry, BODY)
    asyncio.run(gw.router.route(entry, ScanResult(action=QUARANTINE, verdicts=list(verdicts))))
    return entry.mid, submitted


def log_of(gw: Gateway) -> str:
    gw.maillog.flush()
    return gw.maillog.path.read_text()


def test_a_release_is_spooled_under_a_new_mid_for_the_stages_after_the_quarantine(
        gateway: Gateway) -> None:
    mid, submitted = held(gateway, Verdict("antivirus", "Virus", "a/v verdict:VIRAL X"))
    result = gateway.local.service.act(ADMIN_CALLER, "release", mid)
    assert result.ok and result.settled == "released"
    assert result.text.endswith("Queued for delivery on this gateway.")
    [(entry, body)] = submitted
    assert entry.mid != mid and body == BODY
    assert entry.state == INCOMING and gateway.spool.get(entry.mid) is not None
    released = entry.meta["local_release"]
    assert released["origin_mid"] == mid and released["resume_after"] == "antivirus"
    assert "released" not in entry.meta  # no release receipt for the manager
    assert [(r.rid, r.address, r.host) for r in entry.recipients] == [
        (0, "x@one.example", None)]
    assert gateway.transfer_marker(release_transfer_id("SN", mid)).exists()
    log = log_of(gateway)
    assert f"MID {mid} released from all quarantines" in log
    assert f'MID {mid} released from quarantine "Virus" (manual) t=' in log
    assert f"MID {mid} rewritten to MID {entry.mid} by release from local quarantine" in log
    assert gateway.local.held_count() == 0


def test_a_settlement_repeated_after_a_crash_spools_the_release_once(gateway: Gateway) -> None:
    mid, submitted = held(gateway, Verdict("message_filters", "Policy", "message filter:f"))
    record = gateway.local.store.get(mid)
    assert record is not None
    first = gateway.local.releases._spool_release(record, ("Policy",), "manual")
    again = gateway.local.releases._spool_release(record, ("Policy",), "manual")
    assert first is not None and again is None and len(submitted) == 1


def test_the_recovery_settles_a_claimed_release(gateway: Gateway) -> None:
    """A crash after the claim and before the settlement: the next start releases it."""
    mid, submitted = held(gateway, Verdict("message_filters", "Policy", "message filter:f"))
    assert gateway.local.store.act(mid, "released", "Policy").settled == "released"
    assert gateway.local.recover([]) == []
    assert len(submitted) == 1 and submitted[0][0].meta["local_release"]["manager_mid"] == mid
    assert gateway.local.store.get(mid)["state"] == "released"  # type: ignore[index]


def test_expiry_applies_the_default_action_locally(gateway: Gateway) -> None:
    mid, submitted = held(gateway, Verdict("message_filters", "Policy", "message filter:f"))
    record = gateway.local.store.get(mid)
    assert record is not None
    exit_at = max(q["scheduled_exit"] for q in record["quarantines"])
    # Policy's default action is delete: expired, the message is never delivered
    assert gateway.local.service.expire(now=exit_at + 1) == 1
    assert submitted == []
    assert f'MID {mid} deleted from quarantine "Policy" (expired)' in log_of(gateway)


def test_send_copy_is_delivered_by_the_gateway_to_the_address(gateway: Gateway) -> None:
    mid, submitted = held(gateway, Verdict("message_filters", "Policy", "message filter:f"))
    result = gateway.local.service.copy(ADMIN_CALLER, mid, "audit@example.com")
    assert result.ok
    [(entry, _)] = submitted
    assert [r.address for r in entry.recipients] == ["audit@example.com"]
    assert entry.meta["local_release"]["copy_of"] == mid
    assert gateway.local.held_count() == 1  # still held


def notice_for(gw: Gateway, mid: int, action: str, **extra: Any) -> RescanNotice:
    return RescanNotice(transfer_id=f"o-SN-{mid}-notice", origin=Origin("gw.test", "SN", mid),
                        quarantine_transfer_id=local_transfer_id("SN", mid),
                        quarantine="Outbreak", action=RescanAction(action),
                        reason="VOF rule:OF-1 no longer matches", rescanned_at=time.time(),
                        **extra)


def test_an_outbreak_rescan_of_a_message_held_here_is_applied_here(gateway: Gateway) -> None:
    """The notice never goes to the.cpq.host: the local quarantine releases the message."""
    mid, submitted = held(gateway, Verdict("outbreak_filters", "Outbreak", "VOF rule:OF-1"))
    gateway.outbreak.notices.put(notice_for(gateway, mid, "release"))
    assert asyncio.run(gateway.rules.ship_notices()) == 0
    assert gateway.outbreak.notices.pending() == [] and not gateway.queues.entries
    [(entry, _)] = submitted
    assert entry.meta["local_release"]["resume_after"] == "outbreak_filters+antivirus"
    assert f'MID {mid} released from quarantine "Outbreak" (rescanned)' in log_of(gateway)


def test_an_outbreak_rescan_extends_the_exit_here(gateway: Gateway) -> None:
    mid, _ = held(gateway, Verdict("outbreak_filters", "Outbreak", "VOF rule:OF-1"))
    assert gateway.local.apply_notice(notice_for(gateway, mid, "extend",
                                                 retention_s=400 * 86400.0))
    record = gateway.local.store.get(mid)
    assert record is not None
    assert record["quarantines"][0]["scheduled_exit"] > time.time() + 399 * 86400


def test_a_notice_for_a_message_sent_to_the_manager_still_goes_there(gateway: Gateway) -> None:
    notice = notice_for(gateway, 99, "release")
    assert not gateway.local.apply_notice(notice)
    gateway.outbreak.notices.put(notice)
    assert asyncio.run(gateway.rules.ship_notices()) == 1
    [queued] = gateway.queues.entries.values()
    assert queued.meta["cpq"]["kind"] == "outbreak_rescan"
