"""The gateway's `cpq_listener` handler (`gateway.handlers.ReleaseHandler`), without a socket.

`store()` is handed the typed transfer the listener decoded at DATA: a
release from the manager for this gateway is spooled once per transfer id
and submitted to the work queue; anything else is refused with its
`cpq.replies` reply.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from pvoq.cpq import replies as cpq_replies
from pvoq.cpq.transfer import QuarantineTransfer, ReleaseTransfer, Transfer
from pvoq.gateway import Gateway, handlers
from pvoq.gateway.handlers import ReleaseHandler
from pvoq.smtp.server import MessageInfo, PvoqEnvelope, PvoqSession
from pvoq.spool.store import Entry

MANAGER_CERT = {"subject": ((("commonName", "m.test"),), (("organizationalUnitName", "manager"),))}
GATEWAY_CERT = {"subject": ((("commonName", "gw2.test"),),
                            (("organizationalUnitName", "gateway"),))}


def release(hostname: str = "gw.test", kind: str = "release",
            copy_of: int | None = None) -> Transfer:
    meta: dict[str, Any] = {
        "v": 1, "kind": kind, "transfer_id": "r-SN-M-31",
        "origin": {"hostname": hostname, "serial": "SN", "mid": 12},
        "sender": "alice@example.org", "recipients": [{"rid": 2, "address": "bob@example.com"}],
        "quarantines": [{"name": "Outbreak", "reason": "VOF rule:X", "stage": "outbreak_filters"}],
        "received": 1700000000.0, "size": 10}
    if kind == "release":
        meta["release"] = {"entry": 31, "stages": ["outbreak_filters"]}
        if copy_of is not None:
            meta["release"]["copy_of"] = copy_of
            meta["transfer_id"] = "r-SN-M-32"
        return ReleaseTransfer.from_json(meta)
    return QuarantineTransfer.from_json(meta)


class Session:
    icid = 3
    peer_ip = "10.0.0.9"

    def __init__(self, cert: dict[str, Any] | None) -> None:
        self.peer_certificate = cert


def store(handler: ReleaseHandler, transfer: Transfer, cert: dict[str, Any] | None = MANAGER_CERT,
          mid: int = 100) -> str:
    envelope = PvoqEnvelope()
    envelope.mid = mid

    async def main() -> str:
        reply = await handler.store(cast(PvoqSession, Session(cert)), envelope, transfer,
                                    b"Subject: x\r\n\r\nbody\r\n", MessageInfo(subject="x"))
        await handler.drain()  # the work queue gets it once its marker is durable
        return reply
    return asyncio.run(main())


def handler_of(gateway: Gateway, submitted: list[Entry]) -> ReleaseHandler:
    return ReleaseHandler(gateway.context, config=gateway.current_config, spool=gateway.spool,
                          marker=gateway.transfer_marker,
                          submit=lambda entry, body: submitted.append(entry))


def test_a_release_is_spooled_once_and_submitted(gateway: Gateway) -> None:
    submitted: list[Entry] = []
    handler = handler_of(gateway, submitted)
    assert store(handler, release()) == "250 2.0.0 Ok: Message 100 accepted"
    [entry] = submitted
    assert (entry.mid, entry.sender, entry.transfer_id) == (100, "alice@example.org", "r-SN-M-31")
    assert [(r.rid, r.address) for r in entry.recipients] == [(2, "bob@example.com")]
    assert entry.meta["released"] == {"origin_mid": 12, "manager_mid": 31,
                                      "resume_after": "outbreak_filters+antivirus",
                                      "transfer_id": "r-SN-M-31", "manager": "m.test",
                                      "copy_of": None}
    assert gateway.spool.get(100) is not None
    assert store(handler, release(), mid=101) == \
        cpq_replies.ALREADY_RECEIVED.format(transfer_id="r-SN-M-31")
    assert len(submitted) == 1 and gateway.spool.get(101) is None


def test_refusals(gateway: Gateway) -> None:
    submitted: list[Entry] = []
    handler = handler_of(gateway, submitted)
    assert store(handler, release(kind="quarantine")) == str(cpq_replies.RELEASES_ONLY)
    assert store(handler, release(), cert=GATEWAY_CERT) == str(cpq_replies.MANAGER_ONLY)
    assert store(handler, release(hostname="gw2.test")) == \
        cpq_replies.OTHER_GATEWAY.format(target="gw2.test", hostname="gw.test") == \
        "554 5.7.1 This release belongs to gateway gw2.test, not gw.test"
    assert submitted == [] and gateway.spool.mids() == []


def test_a_release_and_a_send_copy_are_logged_each_in_its_own_words(gateway: Gateway) -> None:
    handler = handler_of(gateway, [])
    assert store(handler, release(), mid=100).startswith("250")
    assert store(handler, release(copy_of=31), mid=101).startswith("250")
    gateway.maillog.flush()
    lines = gateway.maillog.path.read_text().splitlines()
    assert [line.split(" Info: ", 1)[1] for line in lines if "from the SMA" in line] == [
        "MID 100 received from the SMA 10.0.0.9 (MID originally 12) on release from "
        "central quarantine",
        "MID 101 received from the SMA 10.0.0.9 (MID originally 12) as a copy from "
        "central quarantine"]


def test_the_reply_waits_for_the_spool_and_the_work_queue_for_the_marker(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 250 follows the durable spool entry without waiting for the marker's directory
    fsync; the release reaches the work queue (to be delivered, then removed from the spool)
    only once its marker is durable. A failed fsync is tried again."""
    synced = threading.Event()
    calls: list[int] = []

    def fsync_dir(path: Path) -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise OSError(5, "Input/output error")
        assert synced.wait(10)

    monkeypatch.setattr(handlers, "fsync_dir", fsync_dir)
    monkeypatch.setattr(handlers, "MARKER_RETRY_S", 0.01)
    submitted: list[Entry] = []
    handler = handler_of(gateway, submitted)

    async def main() -> None:
        envelope = PvoqEnvelope()
        envelope.mid = 100
        reply = await asyncio.wait_for(handler.store(
            cast(PvoqSession, Session(MANAGER_CERT)), envelope, release(),
            b"Subject: x\r\n\r\nbody\r\n", MessageInfo(subject="x")), 10)
        assert reply == "250 2.0.0 Ok: Message 100 accepted"
        assert gateway.spool.get(100) is not None
        assert gateway.transfer_marker("r-SN-M-31").exists()  # a retry is recognised now
        for _ in range(100):  # the first fsync failed; the second one is under way
            if len(calls) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(calls) == 2 and submitted == []
        synced.set()
        await asyncio.wait_for(handler.drain(), 10)
        assert [e.mid for e in submitted] == [100]
    asyncio.run(main())
    gateway.maillog.flush()
    assert "MID 100 CPQ transfer marker could not be made durable" in \
        gateway.maillog.path.read_text()
