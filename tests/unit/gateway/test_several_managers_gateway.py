"""A gateway that lists several managers: its `the.cpq.host` tries them in order, and its
`cpq_listener` takes releases from any of them, known by its certificate's name."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from pvoq.config.loader import load_config
from pvoq.config.model import THE_CPQ_HOST
from pvoq.config.template import ApplianceSpec
from pvoq.cpq import replies as cpq_replies
from pvoq.cpq.client import CpqDestination, CpqPeer
from pvoq.cpq.transfer import ReleaseTransfer
from pvoq.deploy import init_appliance
from pvoq.gateway import Gateway
from pvoq.gateway.handlers import ReleaseHandler
from pvoq.smtp.server import MessageInfo, PvoqEnvelope, PvoqSession
from pvoq.spool.store import Entry

MANAGERS = [("10.0.0.1", 7025, "mgr1.test"), ("10.0.0.2", 7026, "mgr2.test")]


def cert(name: str, role: str = "manager") -> dict[str, Any]:
    return {"subject": ((("commonName", name),), (("organizationalUnitName", role),))}


def release(tid: str) -> ReleaseTransfer:
    return ReleaseTransfer.from_json({
        "v": 1, "kind": "release", "transfer_id": tid,
        "origin": {"hostname": "gw.test", "serial": "SN", "mid": 12},
        "sender": "alice@example.org", "recipients": [{"rid": 0, "address": "bob@example.com"}],
        "quarantines": [{"name": "Policy", "reason": "content filter:x", "stage":
                         "content_filters"}],
        "received": 1700000000.0, "size": 10,
        "release": {"entry": 31, "stages": ["content_filters"]}})


class Session:
    icid = 7
    peer_ip = "10.0.0.66"

    def __init__(self, certificate: dict[str, Any]) -> None:
        self.peer_certificate = certificate


def make_gateway(root: Path, **spec: Any) -> Gateway:
    path = init_appliance(root / "gw", ApplianceSpec(role="gateway", hostname="gw.test",
                                                     serial="SN", **spec), ca_dir=root / "ca")
    return Gateway(load_config(path))


@pytest.fixture
def listing(tmp_path: Path) -> Iterator[Gateway]:
    gw = make_gateway(tmp_path, managers=MANAGERS)
    yield gw
    gw.spool.close()
    gw.maillog.close()


def offer(gateway: Gateway, certificate: dict[str, Any], tid: str, mid: int) -> str:
    submitted: list[Entry] = []
    handler = ReleaseHandler(gateway.context, config=gateway.current_config,
                             spool=gateway.spool, marker=gateway.transfer_marker,
                             submit=lambda entry, body: submitted.append(entry))
    envelope = PvoqEnvelope()
    envelope.mid = mid
    return asyncio.run(handler.store(cast(PvoqSession, Session(certificate)), envelope,
                                     release(tid), b"Subject: x\r\n\r\nbody\r\n",
                                     MessageInfo(subject="x")))


def log_of(gateway: Gateway) -> str:
    gateway.maillog.flush()
    return gateway.maillog.path.read_text()


def test_releases_from_every_listed_manager_are_taken(listing: Gateway) -> None:
    assert offer(listing, cert("mgr1.test"), "r-1-aaaa", 100) == \
        "250 2.0.0 Ok: Message 100 accepted"
    assert offer(listing, cert("MGR2.test"), "r-2-bbbb", 101) == \
        "250 2.0.0 Ok: Message 101 accepted"
    assert listing.spool.get(100) is not None and listing.spool.get(101) is not None


def test_a_manager_of_the_ca_that_is_not_listed_is_refused(listing: Gateway) -> None:
    reply = offer(listing, cert("mgr3.test"), "r-3-cccc", 102)
    assert reply == cpq_replies.NOT_OUR_MANAGER.format(name="mgr3.test")
    assert reply.startswith("554 ")
    assert ("ICID 7 CPQ release refused: peer 10.0.0.66 presented a certificate of "
            "'mgr3.test', this gateway's managers are 'mgr1.test', 'mgr2.test'") in log_of(listing)
    assert listing.spool.get(102) is None


def test_the_same_release_from_two_managers_is_taken_once(listing: Gateway) -> None:
    """A release both managers send (one took over the other's settlement) is one transfer."""
    assert offer(listing, cert("mgr1.test"), "r-31-0123456789abcdef", 100).startswith("250 ")
    assert offer(listing, cert("mgr2.test"), "r-31-0123456789abcdef", 101) == \
        cpq_replies.ALREADY_RECEIVED.format(transfer_id="r-31-0123456789abcdef")
    assert listing.spool.get(101) is None


def test_the_single_form_with_a_hostname_takes_only_that_manager(tmp_path: Path) -> None:
    gw = make_gateway(tmp_path, manager_address="10.0.0.1", manager_hostname="mgr1.test")
    try:
        assert offer(gw, cert("mgr1.test"), "r-1-aaaa", 100).startswith("250 ")
        assert offer(gw, cert("mgr2.test"), "r-2-bbbb", 101) == \
            cpq_replies.NOT_OUR_MANAGER.format(name="mgr2.test")
    finally:
        gw.spool.close()
        gw.maillog.close()


def test_the_cpq_host_lists_the_managers_in_order(listing: Gateway) -> None:
    dest = listing.destination(THE_CPQ_HOST)
    assert isinstance(dest, CpqDestination)
    assert dest.peers == (CpqPeer("10.0.0.1", 7025, "mgr1.test"),
                          CpqPeer("10.0.0.2", 7026, "mgr2.test"))
    cfg = listing.config.delivery
    assert (dest.backoff.min_s, dest.backoff.max_s) == (cfg.retry_min_seconds,
                                                        cfg.retry_max_seconds)
