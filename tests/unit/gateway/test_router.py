"""The router on its own: where a scanned message goes, what the manager is told, bounces."""

from __future__ import annotations

import asyncio

from pvoq.config.model import THE_CPQ_HOST
from pvoq.gateway import Gateway
from pvoq.gateway.router import domain_of
from pvoq.scan.verdict import BOUNCE, DROP, PASS, QUARANTINE, ScanResult, Verdict
from pvoq.spool.store import QUEUED, Entry, Recipient

BODY = b"From: a@sender.example\r\nSubject: hi\r\n\r\nhello\r\n"


def incoming(gw: Gateway, sender: str = "a@sender.example") -> Entry:
    entry = Entry(mid=gw.ids.next("mid"), sender=sender,
                  recipients=[Recipient(0, "x@One.Example"), Recipient(1, "y@two.example")],
                  received=1.0, size=len(BODY), icid=7, peer="192.0.2.7")
    gw.spool.put(entry, BODY)
    return entry


def log_of(gw: Gateway) -> str:
    gw.maillog.flush()
    return gw.maillog.path.read_text()


def test_domain_of() -> None:
    assert domain_of("x@One.Example") == "one.example"
    assert domain_of("postmaster@") == "localhost"


def test_clean_mail_goes_to_each_recipients_domain(gateway: Gateway) -> None:
    entry = incoming(gateway)
    asyncio.run(gateway.router.route(entry, ScanResult(action=PASS)))
    routed = gateway.spool.get(entry.mid)
    assert routed is not None and routed.state == QUEUED
    assert [r.host for r in routed.recipients] == ["one.example", "two.example"]
    assert gateway.queues.entries[entry.mid] is entry
    assert f"MID {entry.mid} queued for delivery" in log_of(gateway)


def test_caught_mail_goes_to_the_cpq_host_with_its_metadata(gateway: Gateway) -> None:
    entry = incoming(gateway)
    verdict = Verdict("message_filters", "Policy", "message filter:hold_it")
    asyncio.run(gateway.router.route(entry, ScanResult(action=QUARANTINE, verdicts=[verdict])))
    routed = gateway.spool.get(entry.mid)
    assert routed is not None and {r.host for r in routed.recipients} == {THE_CPQ_HOST}
    meta = routed.meta["cpq"]
    assert meta["kind"] == "quarantine" and meta["transfer_id"].startswith(f"q-SN-{entry.mid}-")
    assert meta["origin"] == {"hostname": "gw.test", "serial": "SN", "mid": entry.mid,
                              "icid": 7, "peer": "192.0.2.7"}
    assert meta["recipients"] == [{"rid": 0, "address": "x@One.Example"},
                                  {"rid": 1, "address": "y@two.example"}]
    assert meta["quarantines"] == [verdict.metadata()]
    log = log_of(gateway)
    assert f'MID {entry.mid} quarantined to "Policy" (message filter:hold_it)' in log
    assert (f'MID {entry.mid} enqueued for transfer to centralized quarantine "Policy" '
            f'(message filter:hold_it)') in log


def test_a_bounce_spools_a_dsn_once_and_finishes_the_message(gateway: Gateway) -> None:
    entry = incoming(gateway)
    asyncio.run(gateway.router.route(entry, ScanResult(action=BOUNCE, reason="filter x")))
    assert entry.mid not in gateway.spool
    [dsn_mid] = gateway.spool.mids()
    dsn = gateway.spool.get(dsn_mid)
    assert dsn is not None and dsn.sender == "" and dsn.meta["dsn_for"] == entry.mid
    assert [(r.address, r.host) for r in dsn.recipients] == [("a@sender.example",
                                                              "sender.example")]
    log = log_of(gateway)
    assert f"Bounced: MID {entry.mid} to RID [0] - 5.7.1 message bounced by filter x" in log
    assert f"Message finished MID {entry.mid} done" in log


def test_a_drop_finishes_the_message_without_a_dsn(gateway: Gateway) -> None:
    entry = incoming(gateway)
    asyncio.run(gateway.router.route(entry, ScanResult(action=DROP, reason="filter y")))
    assert gateway.spool.mids() == []
    assert f"MID {entry.mid} dropped by filter y" in log_of(gateway)


def test_no_dsn_for_a_null_sender(gateway: Gateway) -> None:
    entry = incoming(gateway, sender="")
    gateway.router.bounce(entry, entry.recipients, "5.1.1 unknown user")
    assert gateway.spool.mids() == [entry.mid]
    assert f"MID {entry.mid} bounce not sent: null sender" in log_of(gateway)


def test_the_delivery_queues_bounce_through_the_router(gateway: Gateway) -> None:
    assert gateway.queues.on_bounce == gateway.router.bounce
