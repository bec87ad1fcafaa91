"""Tests for pvoq.quarantine.service: actions, expiry, overflow, roles, audit, races.

Every test runs on SQLite and on a real PostgreSQL server; time is a
controlled clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from qhelpers import RecordingSettler, put
from sqlalchemy import delete, update

from pvoq.errors import Invalid
from pvoq.quarantine.roles import ADMIN, CUSTOM, OPERATOR, READONLY, Caller, PermissionDenied
from pvoq.quarantine.schema import audit
from pvoq.quarantine.search import SearchError, SearchQuery, TextFilter
from pvoq.quarantine.service import MAX_MIDS, QuarantineService, check_mids
from pvoq.quarantine.settings import (
    DAY,
    DELETE,
    RELEASE,
    EarlyRelease,
    QuarantineSettings,
    merge_settings,
)
from pvoq.quarantine.store import DELETED, HELD, RELEASED, QuarantineError, QuarantineStore

ADMIN_CALLER = Caller("alice", "10.0.0.5", ADMIN)
SETTINGS = merge_settings([
    QuarantineSettings("Policy", 10 * DAY, DELETE, True),
    QuarantineSettings("HR", 2 * DAY, RELEASE, False,
                       EarlyRelease(subject_tag="[EARLY]")),
    QuarantineSettings("Legal", 3 * DAY, RELEASE, False),
])


class Env:
    """A store, its service and what was logged and settled."""

    def __init__(self, store: QuarantineStore, clock: Any, quota_bytes: int = 0) -> None:
        self.store = store
        self.clock = clock
        self.settler = RecordingSettler(store)
        self.lines: list[str] = []
        self.service = QuarantineService(store, self.settler, self.lines.append, clock=clock,
                                         quota_bytes=quota_bytes)
        self.lines.clear()  # the audit key's creation: not what these tests look at


@pytest.fixture
def make_env(make_store: Callable[..., QuarantineStore], clock: Any) -> Callable[..., Env]:
    def make(settings: dict[str, QuarantineSettings] = SETTINGS, quota_bytes: int = 0) -> Env:
        store = make_store(settings=settings)
        store.sync_quarantines(settings)
        return Env(store, clock, quota_bytes)
    return make


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


class TestMultiQuarantine:
    def test_delivered_only_when_released_from_all(self, env: Env) -> None:
        """A message in two quarantines is released only after both release it."""
        put(env.store, 1, "Policy", "HR")
        first = env.service.act(ADMIN_CALLER, "release", 1, "Policy")
        assert first.ok and first.settled is None and "Still held" in first.text
        assert env.settler.settled == []
        second = env.service.act(ADMIN_CALLER, "release", 1, "HR")
        assert second.settled == RELEASED
        assert env.settler.settled == [(1, RELEASED, "manual", ("HR",))]

    def test_deleted_from_one_never_delivered(self, env: Env) -> None:
        """Deleted from one quarantine, the message is never released."""
        put(env.store, 1, "Policy", "HR")
        env.service.act(ADMIN_CALLER, "delete", 1, "HR")
        result = env.service.act(ADMIN_CALLER, "release", 1, "Policy")
        assert result.settled == DELETED
        assert [s[1] for s in env.settler.settled] == [DELETED]

    def test_partial_action_is_logged(self, env: Env, clock: Any) -> None:
        """An action that does not settle the message writes its mail_logs line with t=."""
        put(env.store, 1, "Policy", "HR")
        clock.advance(42)
        env.service.act(ADMIN_CALLER, "release", 1, "Policy")
        assert env.lines == ['MID 1 released from quarantine "Policy" (manual) t=42']

    def test_unknown_quarantine_lands_in_unclassified(self, env: Env) -> None:
        """Mail for a quarantine the manager does not know is held in Unclassified."""
        put(env.store, 1, "NoSuchQuarantine")
        assert env.store.held_in(1) == ["Unclassified"]

    def test_action_on_missing_message(self, env: Env) -> None:
        """Acting on an unknown MID fails without settling anything."""
        result = env.service.act(ADMIN_CALLER, "release", 404)
        assert not result.ok and "404" in result.text


class TestPerRecipient:
    def test_release_for_one_recipient(self, env: Env) -> None:
        """Released for one recipient, that recipient's copy settles; the others stay held."""
        put(env.store, 1, "Policy", "HR", recipients=("bob@example.com", "carol@example.com"))
        result = env.service.act(ADMIN_CALLER, "release", 1, recipients=["BOB@example.com"])
        assert result.ok and result.settled == RELEASED
        child = env.store.get(result.mid)
        assert result.mid != 1 and [r["address"] for r in child["recipients"]] == [
            "bob@example.com"]
        parent = env.store.get(1)
        assert [r["address"] for r in parent["recipients"]] == ["carol@example.com"]
        assert env.store.held_in(1) == ["HR", "Policy"]
        rows, total = env.store.search(SearchQuery(recipient=TextFilter("is",
                                                                        "bob@example.com")))
        assert total == 0
        assert env.store.held_count() == 1 and env.store.held_count("HR") == 1
        assert any("rewritten to MID" in line for line in env.lines)

    def test_per_recipient_keeps_multi_quarantine_rules(self, env: Env) -> None:
        """A recipient's part released from one of two quarantines is still held in the other."""
        put(env.store, 1, "Policy", "HR", recipients=("bob@example.com", "carol@example.com"))
        result = env.service.act(ADMIN_CALLER, "release", 1, "Policy",
                                 recipients=["bob@example.com"])
        assert result.settled is None and env.store.held_in(result.mid) == ["HR"]
        assert env.store.held_in(1) == ["HR", "Policy"]
        assert env.store.read_body(result.mid) == env.store.read_body(1)
        done = env.service.act(ADMIN_CALLER, "delete", result.mid, "HR")
        assert done.settled == DELETED

    def test_all_recipients_is_the_message(self, env: Env) -> None:
        """Naming every recipient acts on the message itself, without a split."""
        put(env.store, 1, "Policy")
        result = env.service.act(ADMIN_CALLER, "delete", 1, recipients=["bob@example.com"])
        assert result.mid == 1 and result.settled == DELETED

    def test_unknown_recipient(self, env: Env) -> None:
        """A recipient the message does not have is refused."""
        put(env.store, 1, "Policy")
        result = env.service.act(ADMIN_CALLER, "release", 1, recipients=["eve@example.com"])
        assert not result.ok and "eve@example.com" in result.text


class TestOtherActions:
    def test_delay_scheduled_exit(self, env: Env, clock: Any) -> None:
        """Delay Scheduled Exit moves the exit by the chosen period."""
        put(env.store, 1, "HR")
        before = env.store.get(1)["quarantines"][0]["scheduled_exit"]
        assert env.service.delay(ADMIN_CALLER, 1, "48h").ok
        after = env.store.get(1)["quarantines"][0]["scheduled_exit"]
        assert after - before == 2 * DAY

    def test_move_keeps_exit_and_reason(self, env: Env) -> None:
        """Moving to another policy quarantine keeps the scheduled exit and the reason."""
        put(env.store, 1, ("HR", "content filter:salary"))
        before = env.store.get(1)["quarantines"][0]
        assert env.service.move(ADMIN_CALLER, 1, "HR", "Legal").ok
        after = env.store.get(1)["quarantines"][0]
        assert after["quarantine"] == "Legal"
        assert after["reason"] == before["reason"]
        assert after["scheduled_exit"] == before["scheduled_exit"]

    def test_move_only_to_policy_quarantines(self, env: Env) -> None:
        """A message cannot be moved into Virus or Outbreak."""
        put(env.store, 1, "HR")
        assert not env.service.move(ADMIN_CALLER, 1, "HR", "Virus").ok

    def test_send_copy_admin_only(self, env: Env) -> None:
        """Only an administrator may send a copy; the message stays held."""
        put(env.store, 1, "Policy")
        with pytest.raises(PermissionDenied):
            env.service.copy(Caller("op", "x", OPERATOR), 1, "legal@example.com")
        assert env.service.copy(ADMIN_CALLER, 1, "legal@example.com").ok
        assert env.settler.copies == [(1, "legal@example.com")]
        assert env.store.held_in(1) == ["Policy"]

    @pytest.mark.parametrize("address", ["a b@example.com", "<legal@example.com>",
                                         "legal@", "legal@-x.example", "a@x.com,b@y.com",
                                         "legal\r\n@example.com", "x" * 250 + "@example.com"])
    def test_send_copy_to_an_address_no_gateway_accepts_is_refused(self, env: Env,
                                                                   address: str) -> None:
        """A copy to an address a listener would refuse is refused at once: it would
        otherwise wait on the.cpq.release.host for ever (CPQ destinations never bounce)."""
        put(env.store, 1, "Policy")
        result = env.service.copy(ADMIN_CALLER, 1, address)
        assert not result.ok and "not an address a gateway accepts" in result.text
        assert env.settler.copies == []


class TestExpiry:
    def test_default_actions_at_scheduled_exit(self, env: Env, clock: Any) -> None:
        """At its scheduled exit each message gets its quarantine's default action."""
        put(env.store, 1, "HR")        # release after 2 days
        put(env.store, 2, "Policy")    # delete after 10 days
        clock.advance(2 * DAY - 1)
        assert env.service.expire() == 0
        clock.advance(1)
        assert env.service.expire() == 1
        assert env.settler.settled == [(1, RELEASED, "expired", ("HR",))]
        clock.advance(8 * DAY)
        assert env.service.expire() == 1
        assert env.settler.settled[-1] == (2, DELETED, "expired", ("Policy",))

    def test_expired_line(self, env: Env, clock: Any) -> None:
        """An expiry that leaves the message held elsewhere logs the AsyncOS line."""
        put(env.store, 1, "HR", "Policy")
        clock.advance(2 * DAY)
        env.service.expire()
        assert env.lines == [f'MID 1 released from quarantine "HR" (expired) t={2 * 86400}']

    def test_delayed_message_expires_later(self, env: Env, clock: Any) -> None:
        """A delayed exit is respected by the scheduler."""
        put(env.store, 1, "HR")
        env.service.delay(ADMIN_CALLER, 1, "8h")
        clock.advance(2 * DAY)
        assert env.service.expire() == 0
        clock.advance(8 * 3600)
        assert env.service.expire() == 1

    def test_deleted_quarantine_applies_default_action(self, env: Env) -> None:
        """Deleting a non-empty quarantine applies its default action to its messages."""
        put(env.store, 1, "HR")
        put(env.store, 2, "Legal", "Policy")
        reduced = {k: v for k, v in SETTINGS.items() if k not in ("HR", "Legal")}
        pending = env.store.sync_quarantines(reduced)
        assert sorted(pending) == [(1, "HR", RELEASE), (2, "Legal", RELEASE)]
        assert env.service.apply_deleted_quarantines(pending) == 2
        assert env.settler.settled == [(1, RELEASED, "quarantine deleted", ("HR",))]
        assert env.store.held_in(2) == ["Policy"]


class TestOverflow:
    def test_frees_oldest_in_overflow_quarantines(self, make_env: Callable[..., Env],
                                                  clock: Any) -> None:
        """When full, the oldest messages of free-able quarantines get their default action."""
        env = make_env(quota_bytes=3000)
        put(env.store, 1, "Policy")
        clock.advance(1)
        put(env.store, 2, "HR")            # HR does not free space
        clock.advance(1)
        put(env.store, 3, "Policy")
        size = env.store.get(1)["size"]
        assert env.service.make_room(3000 - 2 * size, ["Policy"])
        assert env.settler.settled == [(1, DELETED, "queue full", ("Policy",))]
        assert env.store.held_in(2) == ["HR"]

    def test_full_and_nothing_freeable(self, make_env: Callable[..., Env]) -> None:
        """When nothing may be freed, there is no room: the gateway must keep the mail."""
        env = make_env(quota_bytes=1000)
        put(env.store, 1, "HR")
        assert not env.service.make_room(1000, ["HR"])
        assert env.settler.settled == []
        assert any("space full" in line for line in env.lines)

    def test_percent_full_line(self, make_env: Callable[..., Env]) -> None:
        """Crossing a fill threshold logs 'Quarantine "X" is NN% full'."""
        env = make_env(quota_bytes=10_000)
        assert env.service.make_room(8_000, ["Policy"])
        assert env.lines == ['Quarantine "Policy" is 80% full']


class TestCounters:
    def test_counters_follow_every_change(self, env: Env) -> None:
        """The maintained held counters equal real counts after adds, actions, moves, bulk."""
        for mid in range(1, 11):
            put(env.store, mid, "Policy", *(["HR"] if mid % 3 == 0 else []))
        env.service.act(ADMIN_CALLER, "release", 1)
        env.service.act(ADMIN_CALLER, "delete", 3, "HR")
        env.service.move(ADMIN_CALLER, 2, "Policy", "Legal")
        env.service.bulk(ADMIN_CALLER, SearchQuery(quarantines=("HR",)), "release",
                         dry_run=False)
        counts = env.store.counts()
        for name in ("Policy", "HR", "Legal"):
            assert env.store.held_count(name) == counts.get(name, (0, 0))[0]
        rows, total = env.store.search(SearchQuery(limit=250))
        assert env.store.held_count() == total == len(rows) == 7
        _, policy_total = env.store.search(SearchQuery(quarantines=("Policy",)))
        assert policy_total == counts["Policy"][0]
        assert env.store.used_bytes() == sum(r["size"] for r in rows)


class TestRoles:
    def test_read_only_cannot_act(self, env: Env) -> None:
        """A read-only operator may search but not release."""
        put(env.store, 1, "Policy")
        viewer = Caller("ro", "x", READONLY)
        assert env.service.search(viewer, SearchQuery())[1] == 1
        with pytest.raises(PermissionDenied):
            env.service.act(viewer, "release", 1)

    def test_custom_role_limited_to_its_quarantines(self, env: Env) -> None:
        """A custom role sees and acts only in the quarantines granted to it."""
        put(env.store, 1, "Policy")
        put(env.store, 2, "HR")
        put(env.store, 3, "Policy", "HR")
        hr = Caller("hr", "x", CUSTOM, ("HR",))
        rows, total = env.service.search(hr, SearchQuery())
        assert total == 2 and {r["id"] for r in rows} == {2, 3}
        with pytest.raises(PermissionDenied):
            env.service.search(hr, SearchQuery(quarantines=("Policy",)))
        result = env.service.act(hr, "release", 3)
        assert result.acted_on == ("HR",) and env.store.held_in(3) == ["Policy"]
        assert not env.service.act(hr, "release", 1).ok
        with pytest.raises(PermissionDenied):
            env.service.details(hr, 1)


class TestGrants:
    """Every action checks the custom role's granted quarantines in the service."""

    @staticmethod
    def exits(env: Env, mid: int) -> dict[str, float]:
        record = env.store.get(mid)
        assert record is not None
        return {q["quarantine"]: q["scheduled_exit"] for q in record["quarantines"]}

    def test_hr_only_role_cannot_delay_a_policy_only_message(self, env: Env) -> None:
        """Delay was the one action that forgot the grants: not any more."""
        put(env.store, 1, "Policy")
        before = self.exits(env, 1)
        hr = Caller("hr", "x", CUSTOM, ("HR",))
        result = env.service.delay(hr, 1, "24h")
        assert not result.ok and "granted" in result.text
        assert self.exits(env, 1) == before
        with pytest.raises(PermissionDenied):
            env.service.delay(hr, 1, "24h", "Policy")

    def test_delay_in_two_quarantines_touches_only_the_granted_one(self, env: Env) -> None:
        put(env.store, 1, "Policy", "HR")
        before = self.exits(env, 1)
        result = env.service.delay(Caller("hr", "x", CUSTOM, ("HR",)), 1, "8h")
        assert result.ok and result.acted_on == ("HR",)
        after = self.exits(env, 1)
        assert after["Policy"] == before["Policy"]
        assert after["HR"] == before["HR"] + 8 * 3600

    @pytest.mark.parametrize("action", ["release", "delete", "delay", "move", "copy", "bulk"])
    def test_no_action_reaches_a_policy_only_message(self, env: Env, action: str) -> None:
        """Whatever the action, an HR-only caller leaves a Policy-only message as it was."""
        put(env.store, 1, "Policy")
        before = self.exits(env, 1)
        hr = Caller("hr", "x", CUSTOM, ("HR",))
        hr_admin = Caller("hr-admin", "x", ADMIN, ("HR",))  # may send copies, of HR only
        outcome: Any
        try:
            if action in ("release", "delete"):
                outcome = env.service.act(hr, action, 1)
            elif action == "delay":
                outcome = env.service.delay(hr, 1, "1w")
            elif action == "move":
                outcome = env.service.move(hr, 1, "Policy", "HR")
            elif action == "copy":
                outcome = env.service.copy(hr_admin, 1, "x@example.com")
            else:
                for bulk_action in ("release", "delete", "delay"):
                    data = env.service.bulk(hr, SearchQuery(), bulk_action, dry_run=False)
                    assert data["count"] == 0
                outcome = None
        except PermissionDenied:
            outcome = None
        assert outcome is None or not outcome.ok
        assert env.store.held_in(1) == ["Policy"] and self.exits(env, 1) == before
        assert env.settler.copies == []


class TestBounds:
    """Out-of-range MIDs and bad search values are operator errors, never a crash."""

    @pytest.mark.parametrize("mid", [2**63, 2**64, 0, -1])
    def test_a_mid_out_of_range_is_an_unknown_message(self, env: Env, mid: int) -> None:
        put(env.store, 1, "Policy")
        assert not env.service.act(ADMIN_CALLER, "release", mid).ok
        assert not env.service.act(ADMIN_CALLER, "delete", mid, "Policy").ok
        assert not env.service.delay(ADMIN_CALLER, mid, "24h").ok
        assert not env.service.move(ADMIN_CALLER, mid, "Policy", "HR").ok
        assert not env.service.copy(ADMIN_CALLER, mid, "x@example.com").ok
        assert [r.ok for r in env.service.act_many(ADMIN_CALLER, "delete", [mid, 1])] == [
            False, True]
        with pytest.raises(QuarantineError):
            env.service.details(ADMIN_CALLER, mid)

    @pytest.mark.parametrize("values", [
        {"subject": {"op": "contains", "value": "a\x00b"}}, {"sender": ["is", "\x00"]},
        {"quarantines": ("Po\x00licy",)}, {"gateway": "10.0.0.1\x00"},
        {"attachment_min_size": 10**22}, {"attachment_max_size": -1},
        {"attachment_min_size": "12"}, {"offset": 2**64}, {"limit": 2**63},
        {"offset": "x"}, {"received_from": float("nan")}, {"received_to": float("inf")},
    ], ids=repr)
    def test_bad_search_values_are_search_errors(self, env: Env, values: dict[str, Any]
                                                 ) -> None:
        with pytest.raises(SearchError):
            env.service.search(ADMIN_CALLER, SearchQuery.from_dict(values))

    def test_a_request_names_a_bounded_number_of_mids(self) -> None:
        check_mids(list(range(MAX_MIDS)))
        with pytest.raises(Invalid, match=f"at most {MAX_MIDS} MIDs"):
            check_mids(list(range(MAX_MIDS + 1)))

    def test_bulk_steps_yield_between_slices(self, env: Env) -> None:
        """A long bulk action comes in slices, so that a caller on a loop can yield."""
        for mid in range(1, 8):
            put(env.store, mid, "Policy")
        steps = list(env.service.bulk_steps(ADMIN_CALLER, SearchQuery(), "delete",
                                            dry_run=False, chunk=3))
        assert steps[:3] == [None, None, None]
        summary = steps[3]
        assert len(steps) == 4 and summary is not None and summary["done"] == 7
        assert env.store.search(SearchQuery())[1] == 0


class TestBulkAndSaved:
    def test_dry_run_lists_without_acting(self, env: Env) -> None:
        """A dry run lists what a bulk action would act on and changes nothing."""
        for mid in range(1, 6):
            put(env.store, mid, "Policy", subject=f"offer {mid}" if mid % 2 else "hello")
        query = SearchQuery(subject=TextFilter("starts_with", "offer"))
        plan = env.service.bulk(ADMIN_CALLER, query, "delete", dry_run=True)
        assert plan["count"] == 3 and plan["mids"] == [1, 3, 5]
        assert env.store.search(SearchQuery())[1] == 5
        done = env.service.bulk(ADMIN_CALLER, query, "delete", dry_run=False)
        assert done["done"] == 3
        assert env.store.search(SearchQuery())[1] == 2

    def test_saved_searches(self, env: Env) -> None:
        """A saved search is stored per user and comes back equal."""
        query = SearchQuery(quarantines=("HR",), sender=TextFilter("ends_with", ".org"))
        env.service.save_search(ADMIN_CALLER, "hr-org", query)
        assert env.service.saved_searches(ADMIN_CALLER) == {"hr-org": query}
        assert env.service.saved_searches(Caller("bob", "x", ADMIN)) == {}
        assert env.service.delete_search(ADMIN_CALLER, "hr-org")
        assert env.service.saved_searches(ADMIN_CALLER) == {}


class TestAudit:
    def test_actions_and_views_are_recorded(self, env: Env) -> None:
        """Every action and view is in the trail with who, from where and what."""
        put(env.store, 1, "Policy")
        env.service.details(ADMIN_CALLER, 1)
        env.service.act(ADMIN_CALLER, "release", 1)
        records = env.service.audit.tail()
        assert [(r["actor"], r["origin"], r["action"]) for r in records] == [
            ("alice", "10.0.0.5", "view"), ("alice", "10.0.0.5", "release")]
        assert records[1]["detail"]["mid"] == 1
        assert env.service.audit.verify().ok

    def _trail(self, env: Env, n: int = 5) -> None:
        for i in range(n):
            env.service.audit.append("alice", "cli", "search", {"i": i})

    def test_edited_record_detected(self, env: Env) -> None:
        """Editing a record breaks the chain at that record."""
        self._trail(env)
        with env.store.engine.begin() as conn:
            conn.execute(update(audit).where(audit.c.seq == 3).values(actor="mallory"))
        verdict = env.service.audit.verify()
        assert not verdict.ok and verdict.broken_at == 3

    def test_removed_record_detected(self, env: Env) -> None:
        """Removing a record in the middle is detected."""
        self._trail(env)
        with env.store.engine.begin() as conn:
            conn.execute(delete(audit).where(audit.c.seq == 2))
        verdict = env.service.audit.verify()
        assert not verdict.ok and verdict.broken_at == 2

    def test_removed_tail_detected(self, env: Env) -> None:
        """Removing the last records is detected through the chain head."""
        self._trail(env)
        with env.store.engine.begin() as conn:
            conn.execute(delete(audit).where(audit.c.seq >= 4))
        assert not env.service.audit.verify().ok


class TestRaces:
    def test_two_managers_one_release(self, make_env: Callable[..., Env]) -> None:
        """Two manager processes releasing the same messages at once: each wins some,
        every message is released exactly once."""
        a, b = make_env(), make_env()
        mids = list(range(1, 41))
        for mid in mids:
            put(a.store, mid, "Policy", "HR")
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def run(env: Env) -> None:
            try:
                barrier.wait()
                for mid in mids:
                    env.service.act(ADMIN_CALLER, "release", mid)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(e,)) for e in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        won_a = {s[0] for s in a.settler.settled}
        won_b = {s[0] for s in b.settler.settled}
        assert won_a | won_b == set(mids) and not won_a & won_b
        assert all(a.store.get(m)["state"] == RELEASED for m in mids)

    def test_two_managers_bulk_release(self, make_env: Callable[..., Env]) -> None:
        """Two bulk releases of the same search at once settle every message exactly once."""
        a, b = make_env(), make_env()
        for mid in range(1, 201):
            put(a.store, mid, "Policy", "HR")
        barrier = threading.Barrier(2)

        def run(env: Env) -> None:
            barrier.wait()
            env.service.bulk(ADMIN_CALLER, SearchQuery(), "release", dry_run=False)

        threads = [threading.Thread(target=run, args=(e,)) for e in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        settled = [s[0] for s in a.settler.settled + b.settler.settled]
        assert sorted(settled) == list(range(1, 201))

    def test_claim_settlement_once(self, make_store: Callable[..., QuarantineStore]) -> None:
        """Released from its two quarantines by two processes, the settlement is claimed once."""
        a, b = make_store(settings=SETTINGS), make_store(settings=SETTINGS)
        put(a, 1, "Policy", "HR")
        first = a.act(1, RELEASED, "Policy")
        second = b.act(1, RELEASED, "HR")
        assert first.settled is None and second.settled == RELEASED
        assert a.claim_settlement(1) is None and b.claim_settlement(1) is None

    def test_expiry_races(self, make_env: Callable[..., Env], clock: Any) -> None:
        """Two schedulers expiring at once apply each default action exactly once."""
        a, b = make_env(), make_env()
        for mid in range(1, 31):
            put(a.store, mid, "HR")
        clock.advance(3 * DAY)
        barrier = threading.Barrier(2)
        counts: list[int] = []

        def run(env: Env) -> None:
            barrier.wait()
            counts.append(env.service.expire(batch=7))

        threads = [threading.Thread(target=run, args=(e,)) for e in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(counts) == 30
        assert len(a.settler.settled) + len(b.settler.settled) == 30

    def test_stale_claim_recovered(self, make_store: Callable[..., QuarantineStore],
                                   clock: Any) -> None:
        """A settlement claimed by a process that died is taken over after the lease."""
        a, b = make_store(settings=SETTINGS), make_store(settings=SETTINGS)
        put(a, 1, "Policy")
        assert a.act(1, RELEASED).settled == RELEASED   # a crashes before finishing
        assert b.unsettled() == []
        clock.advance(301)
        assert b.unsettled() == [1]
        assert b.reclaim(1) == RELEASED
        assert a.get(1)["state"] != HELD

    def test_second_action_refused(self, env: Env) -> None:
        """An action on a quarantine already acted on is refused."""
        put(env.store, 1, "Policy")
        env.store.act(1, DELETED)
        with pytest.raises(QuarantineError):
            env.store.act(1, RELEASED)
