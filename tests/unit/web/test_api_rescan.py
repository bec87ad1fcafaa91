"""The REST API's dry rescan and release receipts, over real HTTP (uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "quarantine"))
from qhelpers import RecordingSettler, put

from pvoq.config.model import ApiToken
from pvoq.cpq.transfer import Origin, Outcome, ReceiptOutcome, ReleaseReceipt
from pvoq.manager.rescan import RescanFailed
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.store import QuarantineStore
from pvoq.web.api import create_app
from pvoq.web.server import ApiServer

TOKENS = (ApiToken("t-operator", "oscar", "operator"), ApiToken("t-readonly", "rita", "read-only"))
API = "/api/v2.0/quarantine/messages"
VERDICT = {"gateway": "gw1.example.com", "action": "pass", "reason": "", "unscannable": "",
           "verdicts": [], "stages": [{"stage": "content_filters", "outcome": "pass",
                                       "hits": [], "misses": ["confidential_subject"]}]}


class Rescanner:
    def __init__(self) -> None:
        self.error: RescanFailed | None = None

    async def rescan(self, record: dict[str, Any], body: bytes) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return dict(VERDICT)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, QuarantineService, Rescanner]]:
    store = QuarantineStore(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "bodies")
    service = QuarantineService(store, RecordingSettler(store), lambda line: None)
    service.rescanner = rescanner = Rescanner()
    server = ApiServer(create_app(service, TOKENS), "127.0.0.1", 0)
    thread = threading.Thread(target=asyncio.run,
                              args=(server.server.serve(sockets=[server.socket]),))
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}", service, rescanner
    finally:
        server.server.should_exit = True
        thread.join(timeout=30)
        server.socket.close()
        store.close()


def client(base: str, token: str = "t-operator") -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_an_operator_gets_the_verdict_and_a_read_only_operator_may_not(
        served: tuple[str, QuarantineService, Rescanner]) -> None:
    base, service, _ = served
    mid = put(service.store, 1001, "Policy")
    with client(base) as c:
        got = c.post(f"{API}/rescan", json={"mid": mid})
        assert got.status_code == 200, got.text
        assert got.json()["data"]["action"] == "pass"
        assert got.json()["data"]["dry_run"] is True
        assert c.post(f"{API}/rescan", json={"mid": mid, "dryRun": False}).status_code == 422
    with client(base, "t-readonly") as c:
        assert c.post(f"{API}/rescan", json={"mid": mid}).status_code == 403


def test_an_unreachable_gateway_is_a_502_naming_it(
        served: tuple[str, QuarantineService, Rescanner]) -> None:
    base, service, rescanner = served
    mid = put(service.store, 1001, "Policy")
    rescanner.error = RescanFailed("gateway gw1.example.com at 10.0.0.1:7025 is unreachable")
    with client(base) as c:
        got = c.post(f"{API}/rescan", json={"mid": mid})
    assert got.status_code == 502
    assert "gateway gw1.example.com" in got.json()["error"]["message"]


def test_details_carry_the_release_history_and_receipts(
        served: tuple[str, QuarantineService, Rescanner]) -> None:
    base, service, _ = served
    mid = put(service.store, 1001, "Policy")
    with client(base) as c:
        assert c.post(API, json={"action": "release", "mids": [mid]}).status_code == 200
    service.record_receipt(ReleaseReceipt(
        transfer_id="d-GW-SN-7-000000000001", origin=Origin("gw1.example.com", "GW-SN", 7),
        release_id="r-1001-x", entry=mid, outcomes=(ReceiptOutcome(
            0, "bob@example.com", Outcome.BOUNCED, "mx.example.com", "550 5.1.1 <b>", 1.0e9),)),
        "10.1.2.1")
    with client(base) as c:
        got = c.get(f"{API}/details", params={"mid": mid}).json()["data"]["attributes"]
    (line,) = got["releaseHistory"]
    assert line.startswith("released by oscar at ")
    assert line.endswith("; bounced by gw1.example.com to mx.example.com for "
                         "<bob@example.com> at 2001-09-09T01:46:40Z: 550 5.1.1 <b>")
    assert [(r["outcome"], r["reply"]) for r in got["releaseReceipts"]] == [
        ("bounced", "550 5.1.1 <b>")]
