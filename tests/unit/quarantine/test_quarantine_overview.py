"""The administration pages' views: quarantine holdings and the filtered audit trail
(`quarantine.overview`), on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from qhelpers import RecordingSettler, put

from pvoq.quarantine.overview import (
    PAGE_MAX,
    AuditFilter,
    FilterError,
    OverviewCommands,
    mentions,
    search_audit,
)
from pvoq.quarantine.roles import ADMIN, Caller
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.settings import DAY, DELETE, RELEASE, QuarantineSettings, merge_settings
from pvoq.quarantine.store import QuarantineStore

SETTINGS = merge_settings([QuarantineSettings("HR", 2 * DAY, RELEASE, False),
                           QuarantineSettings("Legal", 3 * DAY, DELETE, True)])
ALICE = Caller("alice", "web 10.0.0.5", ADMIN)
BOB = Caller("bob", "admin-socket", ADMIN)


@pytest.fixture
def service(make_store: Callable[..., QuarantineStore], clock: Any) -> QuarantineService:
    store = make_store(settings=SETTINGS)
    store.sync_quarantines(SETTINGS)
    return QuarantineService(store, RecordingSettler(store), lambda line: None, clock=clock)


def run(commands: OverviewCommands, name: str, **args: Any) -> dict[str, Any]:
    method = getattr(commands, commands.command_names()[name])
    result: dict[str, Any] = asyncio.run(method(args))
    return result


def commands_of(service: QuarantineService) -> OverviewCommands:
    return OverviewCommands(lambda: service.store.settings, service.store.engine,
                            lambda: 1 << 20)


class TestOverview:
    def test_each_quarantine_with_what_it_holds(self, service: QuarantineService,
                                                clock: Any) -> None:
        put(service.store, 1, "HR")
        clock.advance(60)
        put(service.store, 2, "HR", "Legal")
        data = run(commands_of(service), "quarantine.overview")["data"]
        rows = {r["name"]: r for r in data["quarantines"]}
        assert [r["name"] for r in data["quarantines"]] == [
            "Outbreak", "Policy", "Unclassified", "Virus", "HR", "Legal"]
        assert rows["HR"]["messages"] == 2 and rows["Legal"]["messages"] == 1
        assert rows["HR"]["bytes"] > rows["Legal"]["bytes"] > 0
        assert rows["HR"]["oldest"] < rows["Legal"]["oldest"]
        assert rows["Policy"] == {**rows["Policy"], "messages": 0, "bytes": 0, "oldest": None}
        assert (rows["HR"]["retention_s"], rows["HR"]["default_action"]) == (2 * DAY, "release")
        assert data["quota_bytes"] == 1 << 20

    def test_released_mail_is_no_longer_counted(self, service: QuarantineService) -> None:
        put(service.store, 1, "HR")
        service.act(ALICE, "release", 1)
        rows = {r["name"]: r for r in run(commands_of(service),
                                          "quarantine.overview")["data"]["quarantines"]}
        assert (rows["HR"]["messages"], rows["HR"]["bytes"]) == (0, 0)


class TestAuditSearch:
    def test_filters_by_actor_action_mid_and_time(self, service: QuarantineService,
                                                   clock: Any) -> None:
        for mid in (7, 17, 70, 71):
            put(service.store, mid, "HR")
        start = clock()
        service.act(ALICE, "release", 7)
        clock.advance(100)
        service.act(BOB, "delete", 17)
        service.act_many(ALICE, "release", [70, 71])
        engine = service.store.engine

        def seqs(**args: Any) -> list[tuple[str, str]]:
            page = search_audit(engine, AuditFilter.from_args(args))
            return [(r["actor"], r["action"]) for r in page["records"]]

        assert seqs(actor="alice") == [("alice", "release"), ("alice", "release")]
        assert seqs(action="delete") == [("bob", "delete")]
        assert seqs(mid="7") == [("alice", "release")]           # not 17, 70 or 71
        assert seqs(mid="71") == [("alice", "release")]          # in a list of MIDs
        assert seqs(until=str(start + 50)) == [("alice", "release")]
        assert seqs(since=str(start + 50), actor="bob") == [("bob", "delete")]

    def test_pages_go_down_the_sequence_numbers(self, service: QuarantineService) -> None:
        for mid in range(1, 8):
            put(service.store, mid, "HR")
            service.act(ALICE, "delete", mid)
        engine = service.store.engine
        first = search_audit(engine, AuditFilter(action="delete", limit=3))
        assert [r["detail"]["mid"] for r in first["records"]] == [7, 6, 5]
        second = search_audit(engine, AuditFilter(action="delete", limit=3,
                                                  before=first["next"]))
        assert [r["detail"]["mid"] for r in second["records"]] == [4, 3, 2]
        last = search_audit(engine, AuditFilter(action="delete", limit=3,
                                                before=second["next"]))
        assert [r["detail"]["mid"] for r in last["records"]] == [1]
        assert last["next"] is None

    @pytest.mark.parametrize(("args", "field"), [
        ({"mid": "abc"}, "mid"), ({"mid": "0"}, "mid"), ({"mid": str(2**64)}, "mid"),
        ({"since": "nan"}, "since"), ({"until": "1e400"}, "until"),
        ({"limit": str(PAGE_MAX + 1)}, "limit"), ({"actor": "x" * 129}, "actor"),
        ({"acter": "alice"}, "acter")])
    def test_bad_filters_name_the_filter(self, args: dict[str, str], field: str) -> None:
        with pytest.raises(FilterError) as caught:
            AuditFilter.from_args(args)
        assert caught.value.field == field


def test_mentions() -> None:
    assert mentions({"mid": 5}, 5) and mentions({"mids": [4, 5]}, 5)
    assert not mentions({"mid": 55}, 5) and not mentions({"mids": "5"}, 5)
