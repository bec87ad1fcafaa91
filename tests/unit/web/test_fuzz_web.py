"""Fuzzing the REST API's query parameters and bodies, in process, over a real SQLite store.

The property: every request an authenticated caller can build (any query
string on the search and details routes, any JSON body on the action,
delete and bulk routes) gets a 2xx or a 4xx with its error, never a 500;
and `query_from_params` gives a `SearchQuery` or raises a 4xx
(`HTTPException`) or `SearchError`, never another exception. The app is
`web.api.create_app` over a `QuarantineService` on a real SQLite store,
reached through httpx's ASGI transport (tests/conftest.py has the budget).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import HTTPException
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).parent.parent / "quarantine"))
from qhelpers import RecordingSettler, put

from pvoq.config.model import ApiToken
from pvoq.quarantine.schema import message_quarantines
from pvoq.quarantine.search import SearchError, SearchQuery
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.settings import DAY, RELEASE, QuarantineSettings, merge_settings
from pvoq.quarantine.store import QuarantineStore
from pvoq.web.api import create_app, query_from_params

TOKENS = (ApiToken("t-admin", "alice", "admin"), ApiToken("t-hr", "harry", "custom", ("HR",)))
SETTINGS = merge_settings([QuarantineSettings("HR", 2 * DAY, RELEASE, False)])
API = "/api/v2.0/quarantine/messages"
PARAMS = ["quarantines", "startDate", "endDate", "envelopeSenderFilterBy",
          "envelopeSenderFilterValue", "envelopeRecipientFilterBy",
          "envelopeRecipientFilterValue", "subjectFilterBy", "subjectFilterValue",
          "reasonFilterBy", "reasonFilterValue", "attachmentNameFilterBy",
          "attachmentNameFilterValue", "attachmentSizeMin", "attachmentSizeMax",
          "originatingEsaIp", "originatingEsa", "orderBy", "orderDir", "offset", "limit",
          "mid", "quarantineType"]

# -- values ---------------------------------------------------------------------------------

numbers = st.one_of(st.integers(), st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**30]),
                    st.floats(allow_nan=False, allow_infinity=False))
text_values = st.one_of(
    st.text(max_size=30),
    numbers.map(str),
    st.sampled_from(["", " ", "nan", "inf", "-Infinity", "1e400", "1" * 23, "0x10", "١٢٣",
                     "\x00", "%", "%00", "%ff", "%zz", "a,b,,c", "*", "%_\\", "'; drop table",
                     "2026-11-30", "2026-11-30T12:00:00Z", "0001-01-01T00:00:00+14:00",
                     "9999-12-31T23:59:59-14:00", "0001-01-01", "9999-12-31",
                     "2026-02-30", "contains", "is_not", "begins_with", "asc", "DESC",
                     "size", "scheduledExit", "HR", "Policy"]))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, text_values),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(PARAMS), inner, max_size=3)),
    max_leaves=8)


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    """A raw query string: known and unknown names, any values, repeated names, and
    percent-escapes that are not UTF-8 or not escapes at all."""
    pairs = []
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.one_of(st.sampled_from(PARAMS), st.text(max_size=8)))
        value = draw(text_values)
        raw = draw(st.booleans())
        pairs.append(f"{quote(name)}={value if raw else quote(value)}")
    return "&".join(pairs)


# -- the app --------------------------------------------------------------------------------


class App:
    """The ASGI app, called as a server calls it: the query string as raw bytes (any
    octets, as uvicorn passes them on), the body as JSON."""

    def __init__(self, app: Any, store: QuarantineStore) -> None:
        self.app = app
        self.store = store

    def request(self, method: str, path: str, *, query: str = "", body: Any = None,
                token: str = "t-admin") -> tuple[int, Any]:
        content = b"" if body is None else json.dumps(body).encode()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path,
                 "raw_path": path.encode(), "root_path": "",
                 "query_string": query.encode("utf-8", "surrogateescape"),
                 "headers": [(b"host", b"api"), (b"authorization", f"Bearer {token}".encode()),
                             (b"content-type", b"application/json"),
                             (b"content-length", str(len(content)).encode())],
                 "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80)}
        sent: list[dict[str, Any]] = []
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if requested:
                await asyncio.sleep(3600)  # the client is still there
            requested = True
            return {"type": "http.request", "body": content, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except Exception:  # a server answers 500 to what escapes the app
                if not any(m["type"] == "http.response.start" for m in sent):
                    sent.append({"type": "http.response.start", "status": 500})
        asyncio.run(run())
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        text = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return status, json.loads(text) if text.startswith((b"{", b"[")) else text


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    root = tmp_path_factory.mktemp("api")
    store = QuarantineStore(f"sqlite:///{root / 'q.db'}", root / "bodies", settings=SETTINGS)
    store.sync_quarantines(SETTINGS)
    put(store, 1, "Policy", sender="alice@example.org", subject="Quarterly report")
    put(store, 2, ("Virus", "a/v verdict:VIRAL Eicar"), sender="mallory@evil.example",
        subject="Invoice", attachment=("invoice.exe", 100))
    put(store, 3, "HR", "Policy", sender="bob@example.com", subject="Salary review")
    service = QuarantineService(store, RecordingSettler(store), lambda line: None)
    try:
        yield App(create_app(service, TOKENS), store)
    finally:
        store.close()


def answered(response: tuple[int, Any]) -> None:
    status, content = response
    assert status < 500, response
    if status >= 400:
        assert isinstance(content, dict) and content, response  # the error says what


# -- the tests ------------------------------------------------------------------------------

@settings(max_examples=150)
@given(query_strings(), st.sampled_from(["t-admin", "t-hr"]))
@example("startDate=0001-01-01T00:00:00%2B14:00", "t-admin")
@example("endDate=9999-12-31T23:59:59-14:00", "t-admin")
@example("startDate=0001-01-01", "t-admin")
def test_any_search_query_string_is_2xx_or_4xx(api: App, query: str, token: str) -> None:
    answered(api.request("GET", API, query=query, token=token))


@settings(max_examples=40)
@given(query_strings())
def test_any_details_query_string_is_2xx_or_4xx(api: App, query: str) -> None:
    answered(api.request("GET", f"{API}/details", query=query))


@settings(max_examples=100)
@given(st.dictionaries(st.sampled_from(PARAMS), json_values, max_size=6),
       st.sampled_from(["delete", "release", "delay", "move", "sendcopy", "bogus", ""]),
       json_values)
@example({"startDate": "0001-01-01T00:00:00+14:00"}, "delete", None)
def test_any_bulk_search_is_2xx_or_4xx(api: App, search: dict[str, Any], action: str,
                                       extra: Any) -> None:
    """Dry runs only: the store keeps its messages for the next example."""
    answered(api.request("POST", f"{API}/bulk", body={
        "action": action, "search": search, "dryRun": True, "delay": extra,
        "destinationQuarantineName": extra}))


@settings(max_examples=60)
@given(st.dictionaries(st.sampled_from(["action", "quarantineName", "mids", "delay",
                                        "destinationQuarantineName", "recipientAddresses",
                                        "recipients", "quarantineType"]), json_values,
                       max_size=6),
       st.sampled_from(["POST", "DELETE"]))
def test_any_action_body_is_2xx_or_4xx(api: App, body: dict[str, Any], method: str) -> None:
    """MIDs the store does not hold (its three messages stay for the other tests)."""
    mids = body.get("mids")
    if isinstance(mids, list):
        body["mids"] = [m + 1000 if isinstance(m, int) and not isinstance(m, bool)
                        and 0 <= m <= 3 else m for m in mids]
    elif mids is None or (isinstance(mids, int) and 1 <= mids <= 3):
        body["mids"] = [1000]
    answered(api.request(method, API, body=body))


@given(st.dictionaries(st.sampled_from(PARAMS), json_values, max_size=8))
@example({"startDate": "0001-01-01T00:00:00+14:00"})
@example({"endDate": "9999-12-31T23:59:59-14:00"})
def test_query_from_params_is_a_query_or_a_4xx(params: dict[str, Any]) -> None:
    try:
        assert isinstance(query_from_params(params), SearchQuery)
    except HTTPException as exc:
        assert 400 <= exc.status_code < 500
    except SearchError:
        pass


@settings(max_examples=30)
@given(st.one_of(st.floats(1, 2e12), st.sampled_from([1e12, 2e12, 253402300800.0])))
@example(2e12)
def test_any_stored_exit_is_shown(api: App, when: float) -> None:
    """An exit as far as the metadata allows (a rescan extends by up to 10^12 s) is
    shown as a date, never a 500."""
    with api.store.engine.begin() as conn:
        conn.execute(update(message_quarantines).where(message_quarantines.c.message_id == 1)
                     .values(scheduled_exit=when))
    status, found = api.request("GET", API, query="orderBy=scheduledExit")
    assert status == 200, found
    status, details = api.request("GET", f"{API}/details", query="mid=1")
    assert status == 200, details
    assert details["data"]["attributes"]["scheduledExit"] <= "9999-12-31T23:59:59"
