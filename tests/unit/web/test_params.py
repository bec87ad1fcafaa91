"""Tests for pvoq.web.params: the strict search parameters, and the API refusing what they
refuse (an unknown name in a bulk dry run above all)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent.parent / "quarantine"))
from qhelpers import RecordingSettler, put

from pvoq.config.model import ApiToken
from pvoq.errors import Invalid
from pvoq.quarantine.search import SearchError, TextFilter
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.store import QuarantineStore
from pvoq.web.api import create_app
from pvoq.web.params import (
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_TEXT,
    SEARCH_PARAMS,
    ParamError,
    check_names,
    parse_search,
)

API = "/api/v2.0/quarantine/messages"
TOKENS = (ApiToken("t-admin", "alice", "admin"),)


def refused(params: Any) -> ParamError:
    with pytest.raises(ParamError) as caught:
        parse_search(params)
    return caught.value


class TestParse:
    def test_every_filter(self) -> None:
        """Each AsyncOS name lands in its field of the query."""
        q = parse_search({"quarantines": "Policy, HR", "startDate": "2026-11-30T00:00:00Z",
                          "endDate": "1800000000", "envelopeSenderFilterBy": "begins_with",
                          "envelopeSenderFilterValue": "al",
                          "envelopeRecipientFilterValue": "bob",
                          "subjectFilterBy": "does_not_contain", "subjectFilterValue": "x",
                          "reasonFilterBy": "is", "reasonFilterValue": "Eicar",
                          "attachmentNameFilterBy": "ends_with",
                          "attachmentNameFilterValue": ".exe", "attachmentSizeMin": "10",
                          "attachmentSizeMax": 99, "originatingEsaIp": "192.0.2.1",
                          "orderBy": "scheduledExit", "orderDir": "ASC", "offset": "40",
                          "limit": "50", "quarantineType": "pvo"}).query
        assert q.quarantines == ("Policy", "HR")
        assert q.received_from == 1_795_996_800.0 and q.received_to == 1_800_000_000.0
        assert q.sender == TextFilter("starts_with", "al")
        assert q.recipient == TextFilter("contains", "bob")
        assert q.subject == TextFilter("does_not_contain", "x")
        assert q.reason == TextFilter("is", "Eicar")
        assert q.attachment_name == TextFilter("ends_with", ".exe")
        assert (q.attachment_min_size, q.attachment_max_size) == (10, 99)
        assert q.gateway == "192.0.2.1"
        assert (q.order_by, q.order_dir, q.offset, q.limit) == ("scheduled_exit", "asc", 40, 50)

    def test_given_keeps_what_was_set(self) -> None:
        """`given` is the non-empty parameters as text (what a form shows again)."""
        parsed = parse_search([("subjectFilterValue", "hi"), ("limit", 50), ("orderBy", "")])
        assert parsed.given == {"subjectFilterValue": "hi", "limit": "50"}

    def test_defaults(self) -> None:
        q = parse_search({}).query
        assert (q.limit, q.offset, q.order_by, q.order_dir) == (20, 0, "received", "desc")
        assert parse_search({}, default_limit=250).query.limit == 250


class TestRefused:
    @pytest.mark.parametrize("name", ["envelopeSenderFilterValu", "subject", "mid", "",
                                      "Limit", "quarantine"])
    def test_an_unknown_name_is_refused_by_name(self, name: str) -> None:
        """A misspelled parameter never silently widens the search."""
        exc = refused({name: "x"})
        assert exc.name == name and f"unknown parameter {name!r}" in str(exc)
        assert isinstance(exc, Invalid) and isinstance(exc, SearchError)

    def test_a_name_given_twice_is_refused(self) -> None:
        exc = refused([("subjectFilterValue", "a"), ("subjectFilterValue", "b")])
        assert exc.name == "subjectFilterValue" and "more than once" in str(exc)

    def test_a_long_value_is_refused(self) -> None:
        exc = refused({"subjectFilterValue": "x" * (MAX_TEXT + 1)})
        assert exc.name == "subjectFilterValue" and "longer than" in str(exc)
        assert parse_search({"subjectFilterValue": "x" * MAX_TEXT}).query.subject is not None

    @pytest.mark.parametrize(("name", "value"), [
        ("limit", "0"), ("limit", str(MAX_LIMIT + 1)), ("limit", "1e3"), ("limit", 2**64),
        ("offset", "-1"), ("offset", str(MAX_OFFSET + 1)), ("offset", "9" * 400),
        ("offset", 1.5), ("offset", True), ("attachmentSizeMin", str(2**63)),
        ("attachmentSizeMax", "١٢٣"), ("startDate", "nan"), ("startDate", "1e400"),
        ("endDate", 1e300), ("endDate", "2026-02-30"), ("endDate", "9" * 100),
        ("orderBy", "colour"), ("orderDir", "up"), ("subjectFilterBy", "near"), ("quarantineType", "spam"),
        ("quarantines", ["HR"]), ("subjectFilterValue", 5), ("originatingEsaIp", "a\x00b"),
        ("quarantines", ",".join(f"q{i}" for i in range(101)))])
    def test_a_bad_value_is_refused_by_name(self, name: str, value: Any) -> None:
        exc = refused({name: value})
        assert exc.name == name and name in str(exc)

    def test_check_names_allows_the_given_set(self) -> None:
        assert check_names([("a", 1)], {"a"}) == {"a": 1}
        with pytest.raises(ParamError):
            check_names({"b": 1}, {"a"})


@given(st.dictionaries(st.sampled_from(sorted(SEARCH_PARAMS)),
                       st.one_of(st.none(), st.text(max_size=12), st.integers(),
                                 st.floats(), st.booleans()), max_size=6))
def test_any_params_give_a_query_or_a_search_error(params: dict[str, Any]) -> None:
    """Whatever the values: a query, or a 400-class error (never another exception)."""
    try:
        parse_search(params)
    except SearchError as exc:
        assert isinstance(exc, Invalid)


# -- through the REST API -------------------------------------------------------------------

@pytest.fixture
def service(tmp_path: Path) -> Iterator[QuarantineService]:
    store = QuarantineStore(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "bodies")
    put(store, 1, "Policy", subject="one")
    put(store, 2, "Policy", subject="two")
    put(store, 3, "Virus", subject="three")
    try:
        yield QuarantineService(store, RecordingSettler(store), lambda line: None)
    finally:
        store.close()


def call(service: QuarantineService, method: str, path: str, **kw: Any) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(service, TOKENS),
                                        raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                     headers={"Authorization": "Bearer t-admin"}) as c:
            return await c.request(method, path, **kw)
    return asyncio.run(run())


class TestApi:
    def test_a_misspelled_key_in_a_bulk_dry_run_is_400_not_everything(
            self, service: QuarantineService) -> None:
        """`subjectFilterValu` used to be ignored: the dry run listed every message."""
        r = call(service, "POST", f"{API}/bulk", json={
            "action": "delete", "dryRun": True,
            "search": {"subjectFilterBy": "is", "subjectFilterValu": "one"}})
        assert r.status_code == 400 and "subjectFilterValu" in r.json()["detail"], r.text
        ok = call(service, "POST", f"{API}/bulk", json={
            "action": "delete", "dryRun": True,
            "search": {"subjectFilterBy": "is", "subjectFilterValue": "one"}})
        assert ok.json()["data"]["mids"] == [1]
        assert service.store.held_count() == 3

    def test_a_misspelled_body_field_is_refused(self, service: QuarantineService) -> None:
        """`serach` instead of `search` would select everything: refused, naming it."""
        r = call(service, "POST", f"{API}/bulk", json={
            "action": "delete", "dryRun": False, "serach": {"subjectFilterValue": "one"}})
        assert r.status_code == 422 and "serach" in r.text
        r = call(service, "POST", API, json={"action": "release", "mids": [1],
                                             "recipient": ["x@example.com"]})
        assert r.status_code == 422 and "recipient" in r.text
        assert service.store.held_count() == 3

    @pytest.mark.parametrize("query", ["subjectFilterValu=x", "limit=0", "limit=251",
                                       "offset=100001", "offset=99999999999999999999999",
                                       "limit=5&limit=6", "startDate=99999999999999"])
    def test_bad_search_parameters_are_400_naming_them(self, service: QuarantineService,
                                                       query: str) -> None:
        r = call(service, "GET", f"{API}?{query}")
        name = query.split("=")[0]
        assert r.status_code == 400 and name in r.json()["detail"], r.text

    def test_details_refuses_unknown_parameters(self, service: QuarantineService) -> None:
        assert call(service, "GET", f"{API}/details?mid=1").status_code == 200
        r = call(service, "GET", f"{API}/details?mid=1&withBody=0")
        assert r.status_code == 400 and "withBody" in r.json()["detail"]


def test_params_of_is_the_inverse_of_parse_search() -> None:
    """A saved search comes back into the form as the parameters that ask for it."""
    from pvoq.web.params import params_of

    given = {"quarantines": "Policy,HR", "envelopeSenderFilterBy": "begins_with",
             "envelopeSenderFilterValue": "al", "subjectFilterBy": "does_not_end_with",
             "subjectFilterValue": "x", "attachmentSizeMin": "5", "originatingEsaIp": "gw",
             "startDate": "2026-11-30T10:15", "orderBy": "scheduledExit", "orderDir": "asc"}
    q = parse_search(given).query
    assert params_of(q) == given
    assert parse_search(params_of(q)).query == q
