"""Tests for pvoq.web.api over real HTTP: uvicorn on a free 127.0.0.1 port, httpx as client."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "quarantine"))
from qhelpers import RecordingSettler, put

from pvoq.config.model import ApiToken
from pvoq.quarantine.service import ActionResult, QuarantineService
from pvoq.quarantine.settings import DAY, RELEASE, QuarantineSettings, merge_settings
from pvoq.quarantine.store import QuarantineStore
from pvoq.spool.log import SpoolLogError
from pvoq.web.api import create_app
from pvoq.web.server import ApiServer

TOKENS = (
    ApiToken("t-admin", "alice", "admin"),
    ApiToken("t-operator", "oscar", "operator"),
    ApiToken("t-helpdesk", "hannah", "helpdesk"),
    ApiToken("t-readonly", "rita", "read-only"),
    ApiToken("t-hr", "harry", "custom", ("HR",)),
)
SETTINGS = merge_settings([QuarantineSettings("HR", 2 * DAY, RELEASE, False)])
API = "/api/v2.0/quarantine/messages"


class Api:
    """A running API server and what its service settled."""

    def __init__(self, base: str, store: QuarantineStore, settler: RecordingSettler) -> None:
        self.base = base
        self.store = store
        self.settler = settler
        self.service: QuarantineService | None = None

    def client(self, token: str | None = "t-admin") -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    store = QuarantineStore(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "bodies",
                            settings=SETTINGS)
    store.sync_quarantines(SETTINGS)
    settler = RecordingSettler(store)
    service = QuarantineService(store, settler, lambda line: None)
    server = ApiServer(create_app(service, TOKENS), "127.0.0.1", 0)
    thread = threading.Thread(target=asyncio.run,
                              args=(server.server.serve(sockets=[server.socket]),))
    thread.start()
    try:
        running = Api(f"http://127.0.0.1:{server.port}", store, settler)
        running.service = service
        yield running
    finally:
        server.server.should_exit = True
        thread.join(timeout=30)
        server.socket.close()
        store.close()


def fill(store: QuarantineStore) -> None:
    put(store, 1, "Policy", sender="alice@example.org", subject="Quarterly report")
    put(store, 2, ("Virus", "a/v verdict:VIRAL Eicar-Test-Signature"),
        sender="mallory@evil.example", subject="Invoice", attachment=("invoice.exe", 100))
    put(store, 3, "HR", "Policy", sender="bob@example.com", subject="Salary review")


class TestAuthentication:
    def test_no_token_is_401(self, api: Api) -> None:
        """Without a bearer token the API answers 401."""
        with api.client(None) as c:
            assert c.get(API).status_code == 401

    def test_unknown_token_is_401(self, api: Api) -> None:
        """An unknown token is refused."""
        with api.client("guess") as c:
            assert c.get(API).status_code == 401

    def test_openapi_lists_the_routes(self, api: Api) -> None:
        """The OpenAPI document describes the quarantine routes."""
        with api.client(None) as c:
            spec = c.get("/openapi.json").json()
        assert {API, f"{API}/details", f"{API}/bulk"} <= set(spec["paths"])
        assert {"get", "post", "delete"} <= set(spec["paths"][API])


class TestSearch:
    def test_a_total_over_the_cap_says_more_than(self, api: Api) -> None:
        """Over the count's cap totalCount is the cap, totalExact false; counters stay exact."""
        fill(api.store)
        assert api.service is not None
        api.service.total_cap = 1
        with api.client() as c:
            over = c.get(API, params={"envelopeSenderFilterBy": "contains",
                                      "envelopeSenderFilterValue": "example"}).json()
            assert over["meta"] == {"totalCount": 1, "totalExact": False}
            assert sorted(d["mid"] for d in over["data"]) == [1, 2, 3]
            assert c.get(API).json()["meta"] == {"totalCount": 3, "totalExact": True}

    def test_search_with_filters_and_total(self, api: Api) -> None:
        """AsyncOS parameter names filter, and meta.totalCount counts every match."""
        fill(api.store)
        with api.client() as c:
            body = c.get(API, params={"quarantineType": "pvo", "quarantines": "Policy",
                                      "envelopeSenderFilterBy": "ends_with",
                                      "envelopeSenderFilterValue": ".org"}).json()
            assert body["meta"]["totalCount"] == 1
            entry = body["data"][0]
            assert entry["mid"] == 1
            assert entry["attributes"]["esaHostName"] == "gw1.example.com"
            assert entry["attributes"]["quarantineForReasonDict"][0]["quarantineName"] \
                == "Policy"
            page = c.get(API, params={"limit": 2, "offset": 0, "orderBy": "received",
                                      "orderDir": "asc"}).json()
            assert page["meta"]["totalCount"] == 3 and [d["mid"] for d in page["data"]] == [1, 2]
            assert page["meta"]["totalExact"] is True
            why = c.get(API, params={"reasonFilterBy": "contains",
                                     "reasonFilterValue": "eicar"}).json()
            assert [d["mid"] for d in why["data"]] == [2]

    def test_bad_filter_is_400(self, api: Api) -> None:
        """An unknown filter operator is a 400 with a message."""
        with api.client() as c:
            r = c.get(API, params={"subjectFilterBy": "near", "subjectFilterValue": "x"})
        assert r.status_code == 400

    def test_details_with_body(self, api: Api) -> None:
        """details returns the message, its attachments and its body."""
        fill(api.store)
        with api.client() as c:
            data = c.get(f"{API}/details", params={"mid": 2}).json()["data"]
        assert data["attributes"]["attachments"] == ["invoice.exe"]
        assert "Subject: Invoice" in data["attributes"]["messageBody"]

    def test_details_unknown_is_404(self, api: Api) -> None:
        """details of an unknown MID is 404."""
        with api.client() as c:
            assert c.get(f"{API}/details", params={"mid": 99}).status_code == 404


class TestActions:
    def test_release_and_delete(self, api: Api) -> None:
        """POST release and DELETE act on the listed MIDs."""
        fill(api.store)
        with api.client("t-operator") as c:
            released = c.post(API, json={"action": "release", "quarantineType": "pvo",
                                         "mids": [1]}).json()
            assert released["data"]["mids"] == [1]
            deleted = c.request("DELETE", API, json={"quarantineType": "pvo",
                                                     "mids": [2]}).json()
            assert deleted["data"]["totalCount"] == 1
        assert [s[:2] for s in api.settler.settled] == [(1, "released"), (2, "deleted")]

    def test_release_for_one_recipient(self, api: Api) -> None:
        """A release naming recipients releases a split-off copy for them only."""
        put(api.store, 7, "Policy", recipients=("bob@example.com", "carol@example.com"))
        with api.client() as c:
            r = c.post(API, json={"action": "release", "mids": [7],
                                  "recipients": ["carol@example.com"]}).json()
        [child] = r["data"]["mids"]
        assert child != 7 and api.settler.settled[0][:2] == (child, "released")
        assert [x["address"] for x in api.store.get(7)["recipients"]] == ["bob@example.com"]

    def test_delay_and_move(self, api: Api) -> None:
        """POST delay and move change the exit and the quarantine."""
        fill(api.store)
        before = api.store.get(1)["quarantines"][0]["scheduled_exit"]
        with api.client("t-helpdesk") as c:
            c.post(API, json={"action": "delay", "mids": [1], "delay": "1w"})
            r = c.post(API, json={"action": "move", "mids": [1], "quarantineName": "Policy",
                                  "destinationQuarantineName": "HR"}).json()
        assert r["data"]["mids"] == [1]
        q = api.store.get(1)["quarantines"][0]
        assert q["quarantine"] == "HR" and q["scheduled_exit"] == before + 7 * DAY

    def test_only_admin_sends_copies(self, api: Api) -> None:
        """sendcopy is refused to an operator (403) and allowed to an admin."""
        fill(api.store)
        body = {"action": "sendcopy", "mids": [1], "recipientAddresses": ["x@example.com"]}
        with api.client("t-operator") as c:
            assert c.post(API, json=body).status_code == 403
        with api.client("t-admin") as c:
            assert c.post(API, json=body).json()["data"]["mids"] == [1]
        assert api.settler.copies == [(1, "x@example.com")]

    def test_read_only_cannot_release(self, api: Api) -> None:
        """A read-only token may search but not release."""
        fill(api.store)
        with api.client("t-readonly") as c:
            assert c.get(API).status_code == 200
            assert c.post(API, json={"action": "release", "mids": [1]}).status_code == 403

    def test_custom_role_sees_its_quarantines(self, api: Api) -> None:
        """A custom role's search covers only its quarantines; others are 403."""
        fill(api.store)
        with api.client("t-hr") as c:
            body = c.get(API).json()
            assert [d["mid"] for d in body["data"]] == [3]
            assert c.get(API, params={"quarantines": "Virus"}).status_code == 403

    def test_bulk_dry_run(self, api: Api) -> None:
        """A bulk action with dryRun lists the MIDs and changes nothing."""
        fill(api.store)
        search: dict[str, Any] = {"quarantines": "Policy"}
        with api.client() as c:
            plan = c.post(f"{API}/bulk", json={"action": "delete", "search": search,
                                               "dryRun": True}).json()["data"]
            assert plan["mids"] == [1, 3]
            assert c.get(API).json()["meta"]["totalCount"] == 3
            done = c.post(f"{API}/bulk", json={"action": "delete", "search": search,
                                               "dryRun": False,
                                               "quarantineName": "Policy"}).json()["data"]
        assert done["done"] == 2

    def test_audit_verify_admin_only(self, api: Api) -> None:
        """The audit verification is for administrators and reports the chain intact."""
        fill(api.store)
        with api.client() as c:
            c.get(API)
            assert c.get("/api/v2.0/audit/verify").json()["data"]["ok"] is True
        with api.client("t-operator") as c:
            assert c.get("/api/v2.0/audit/verify").status_code == 403

    def test_sma_prefix(self, api: Api) -> None:
        """The same routes answer under /sma/api/v2.0 as on AsyncOS."""
        with api.client() as c:
            assert c.get("/sma/api/v2.0/quarantine/messages").status_code == 200


class TestErrors:
    """One handler maps the exception tree: an operator error's status and its text."""

    def test_unknown_mid_is_404_with_the_message(self, api: Api) -> None:
        with api.client() as c:
            r = c.get(f"{API}/details", params={"mid": 99})
        assert (r.status_code, r.json()) == (
            404, {"error": {"message": "No message with MID 99 in the quarantines."}})

    def test_a_role_that_may_not_is_403_with_the_message(self, api: Api) -> None:
        fill(api.store)
        with api.client("t-readonly") as c:
            r = c.post(API, json={"action": "release", "mids": [1]})
        assert (r.status_code, r.json()) == (
            403, {"error": {"message": "role read-only may not release"}})

    def test_a_bad_search_is_400_with_the_message(self, api: Api) -> None:
        with api.client() as c:
            r = c.get(API, params={"orderDir": "sideways"})
        assert (r.status_code, r.json()) == (
            400, {"detail": "orderDir must be asc or desc, not 'sideways'"})

    def test_a_bad_setting_is_400_with_the_message(self, api: Api) -> None:
        fill(api.store)
        with api.client() as c:
            r = c.post(API, json={"action": "delay", "mids": [1], "delay": "3d"})
        assert r.status_code == 400
        assert r.json()["error"]["message"].startswith("delay must be one of")

    def test_a_bulk_move_without_a_target_is_404_as_before(self, api: Api) -> None:
        fill(api.store)
        with api.client() as c:
            r = c.post(f"{API}/bulk", json={"action": "move", "search": {}, "dryRun": False})
        assert (r.status_code, r.json()) == (
            404, {"error": {"message": "move needs a source and a target quarantine"}})

    @pytest.mark.parametrize("exc", [SpoolLogError("read-only"), ValueError("boom")],
                             ids=lambda e: type(e).__name__)
    def test_anything_else_is_a_plain_500(self, exc: Exception) -> None:
        """Not the client's doing (a PvoqError off the operator branch, or a bug): 500."""
        class Failing:
            def search(self, *args: Any) -> Any:
                raise exc

        app = create_app(Failing(), TOKENS)  # type: ignore[arg-type]

        async def get() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
                return await c.get(API, headers={"Authorization": "Bearer t-admin"})

        r = asyncio.run(get())
        assert (r.status_code, r.text) == (500, "Internal Server Error")


def asgi(app: Any, request: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
         ) -> httpx.Response:
    """One request to *app* in process (httpx's ASGI transport reads a body lazily)."""
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
            return await request(c)
    return asyncio.run(run())


class Stream:
    """A request body of *chunks* chunks of 64 KiB, counting how many were read."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.read += 1
            yield b"[" + b"1," * 32767 + b"1"


class TestBadInput:
    """Bad input is a 4xx with the usual JSON body, never a 500."""

    @pytest.mark.parametrize("mid", [2**63, 2**64, 0, -1])
    def test_a_mid_out_of_range_is_422(self, api: Api, mid: int) -> None:
        fill(api.store)
        with api.client() as c:
            for action in ("release", "delay"):
                r = c.post(API, json={"action": action, "mids": [mid], "delay": "8h"})
                assert r.status_code == 422, r.text
            r = c.request("DELETE", API, json={"mids": [1, mid]})
            assert r.status_code == 422 and "mids" in r.text
            assert c.get(f"{API}/details", params={"mid": mid}).status_code == 422
        assert api.store.held_count() == 3

    @pytest.mark.parametrize("param", [
        "envelopeSenderFilterValue", "envelopeRecipientFilterValue", "subjectFilterValue",
        "reasonFilterValue", "attachmentNameFilterValue", "quarantines", "originatingEsaIp"])
    def test_a_nul_in_any_filter_value_is_400(self, api: Api, param: str) -> None:
        fill(api.store)
        with api.client() as c:
            r = c.get(API, params={param: "a\x00b"})
            assert (r.status_code, "NUL" in r.text) == (400, True), r.text
            r = c.post(f"{API}/bulk", json={"action": "delete", "search": {param: "\x00"}})
            assert r.status_code == 400, r.text

    @pytest.mark.parametrize("value", ["abc", "1" * 23, "-5", "1e3", str(2**63)])
    def test_a_bad_size_is_400(self, api: Api, value: str) -> None:
        with api.client() as c:
            for param in ("attachmentSizeMin", "attachmentSizeMax"):
                r = c.get(API, params={param: value})
                assert r.status_code == 400 and param in r.json()["detail"], r.text

    @pytest.mark.parametrize("offset", ["x", -1, 2**63, 2**64, 1.5, [1], {"a": 1}, True],
                             ids=repr)
    def test_a_bad_offset_in_bulk_is_400(self, api: Api, offset: Any) -> None:
        fill(api.store)
        with api.client() as c:
            for dry_run in (True, False):
                r = c.post(f"{API}/bulk", json={"action": "delete", "dryRun": dry_run,
                                                "search": {"offset": offset}})
                assert r.status_code == 400, r.text
        assert api.store.held_count() == 3

    @pytest.mark.parametrize("search", [{"orderBy": ["size"]}, {"subjectFilterBy": {}},
                                        {"startDate": "nan"}, {"endDate": "1e400"},
                                        {"endDate": "-Infinity"}, {"quarantines": ["HR"]}],
                             ids=repr)
    def test_other_bad_search_values_in_bulk_are_400(self, api: Api,
                                                      search: dict[str, Any]) -> None:
        with api.client() as c:
            r = c.post(f"{API}/bulk", json={"action": "delete", "search": search})
        assert r.status_code == 400, r.text


class TestBodies:
    """Bodies are bounded and read only once the token is known."""

    def test_an_unauthenticated_body_is_refused_unread(self) -> None:
        body = Stream(2560)  # 160 MiB
        r = asgi(create_app(FakeService(), TOKENS), lambda c: c.request(
            "DELETE", API, content=body, headers={"Content-Type": "application/json"}))
        assert r.status_code == 401 and r.json() == {"detail": "missing or unknown bearer token"}
        assert body.read <= 1

    def test_an_unauthenticated_declared_length_is_refused_unread(self, api: Api) -> None:
        with api.client("guess") as c:
            r = c.post(API, content=b"x" * 2_000_000)
        assert r.status_code == 401

    def test_a_declared_length_over_the_limit_is_413(self, api: Api) -> None:
        with api.client() as c:
            r = c.post(API, content=b"{" + b" " * (1024 * 1024) + b"}")
        assert r.status_code == 413 and "larger than 1048576 bytes" in r.json()["detail"]

    def test_a_chunked_body_is_counted_and_refused_at_the_limit(self) -> None:
        body = Stream(2560)
        r = asgi(create_app(FakeService(), TOKENS, max_body_bytes=200_000), lambda c: c.request(
            "DELETE", API, content=body, headers={"Authorization": "Bearer t-admin"}))
        assert r.status_code == 413 and "larger than 200000 bytes" in r.json()["detail"]
        assert body.read <= 200_000 // 65536 + 2

    def test_a_body_within_the_limit_is_served(self, api: Api) -> None:
        fill(api.store)
        with api.client() as c:
            r = c.request("DELETE", API, json={"mids": [1, 2]})
        assert r.status_code == 200 and r.json()["data"]["mids"] == [1, 2]


class FakeService:
    """A service that records how many messages it acted on, for the slicing tests."""

    def __init__(self) -> None:
        self.calls = 0

    def act(self, _who: Any, _action: str, mid: int, *_args: Any, **_kw: Any) -> ActionResult:
        self.calls += 1
        return ActionResult(mid, True)

    def delay(self, _who: Any, mid: int, *_args: Any) -> ActionResult:
        self.calls += 1
        return ActionResult(mid, True)

    def bulk_steps(self, *_args: Any, **_kw: Any) -> Iterator[dict[str, Any] | None]:
        for _ in range(4):
            self.calls += 500
            yield None
        yield {"done": self.calls}


class TestManyMids:
    """A request names at most max_mids MIDs; the rest are acted on a slice at a time."""

    def test_100000_mids_are_refused_with_400(self, api: Api) -> None:
        fill(api.store)
        with api.client() as c:
            r = c.request("DELETE", API, json={"mids": list(range(1, 100_001))})
            assert r.status_code == 400
            assert r.json()["error"]["message"].startswith("at most 10000 MIDs in one request")
            r = c.post(API, json={"action": "delay", "delay": "8h",
                                  "mids": list(range(1, 100_001))})
            assert r.status_code == 400
        assert api.store.held_count() == 3

    @pytest.mark.parametrize("method,body", [
        ("DELETE", {"mids": list(range(1, 1201))}),
        ("POST", {"action": "release", "mids": list(range(1, 1201))}),
        ("POST", {"action": "delay", "delay": "8h", "mids": list(range(1, 1201))}),
        ("BULK", {"action": "delete", "dryRun": False}),
    ])
    def test_the_loop_runs_other_work_between_slices(self, method: str,
                                                     body: dict[str, Any]) -> None:
        """Another coroutine runs while a long action is under way, not only after it."""
        service = FakeService()
        app = create_app(service, TOKENS)  # type: ignore[arg-type]
        seen: list[int] = []

        async def run() -> httpx.Response:
            done = asyncio.Event()

            async def watch() -> None:
                while not done.is_set():
                    seen.append(service.calls)
                    await asyncio.sleep(0)

            watcher = asyncio.create_task(watch())
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
                url = f"{API}/bulk" if method == "BULK" else API
                r = await c.request("POST" if method == "BULK" else method, url, json=body,
                                    headers={"Authorization": "Bearer t-admin"})
            done.set()
            await watcher
            return r

        r = asyncio.run(run())
        assert r.status_code == 200, r.text
        assert service.calls in (1200, 2000)
        assert [n for n in seen if 0 < n < service.calls], seen


class TestGrants:
    def test_hr_only_role_cannot_delay_a_policy_only_message(self, api: Api) -> None:
        """The custom role granted HR only: delaying a Policy-only message fails."""
        fill(api.store)
        record = api.store.get(1)
        assert record is not None
        with api.client("t-hr") as c:
            r = c.post(API, json={"action": "delay", "mids": [1], "delay": "1w"})
            assert r.status_code == 200
            assert r.json()["data"]["mids"] == [] and r.json()["data"]["totalCount"] == 0
            r = c.post(API, json={"action": "delay", "mids": [1], "delay": "1w",
                                  "quarantineName": "Policy"})
            assert r.status_code == 403
            r = c.post(API, json={"action": "delay", "mids": [3], "delay": "8h"})
            assert r.json()["data"]["mids"] == [3]
        after = api.store.get(1)
        assert after is not None and after["quarantines"] == record["quarantines"]
