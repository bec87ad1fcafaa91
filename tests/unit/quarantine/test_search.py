"""Tests for pvoq.quarantine.search: every filter, sort and page, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from qhelpers import put

from pvoq.quarantine import search as qsearch
from pvoq.quarantine.search import (
    TOTAL_CAP,
    SearchError,
    SearchQuery,
    TextFilter,
    compile_query,
    describe_total,
    like_pattern,
)
from pvoq.quarantine.store import DELETED, RELEASED, QuarantineStore


def mids(store: QuarantineStore, **kwargs: object) -> list[int]:
    """The page's MIDs; the exact count and the bounded one (each cap) find the same."""
    query = SearchQuery(**kwargs)  # type: ignore[arg-type]
    rows, total = store.search(query)
    found = [r["id"] for r in rows]
    for cap in (0, 1, 10_000):
        page, counted, exact = store.search_counted(query, cap)
        assert [r["id"] for r in page] == found, (cap, query)
        assert (counted, exact) == ((total, True) if total <= cap or cap == 10_000
                                    or qsearch.counter_for(query) else (cap, False))
    return found


@pytest.fixture
def filled(store: QuarantineStore, clock: object) -> QuarantineStore:
    """Six messages with different senders, subjects, reasons, attachments and gateways."""
    t = clock
    put(store, 1, "Policy", sender="alice@example.org", subject="Quarterly report")
    t.advance(60)  # type: ignore[attr-defined]
    put(store, 2, ("Virus", "a/v verdict:VIRAL Eicar-Test-Signature"),
        sender="mallory@evil.example", subject="Invoice 100%_paid",
        attachment=("invoice.exe", 5000))
    t.advance(60)  # type: ignore[attr-defined]
    put(store, 3, ("Outbreak", "VOF rule:OUTBREAK_0001"), sender="news@shop.example",
        subject="Your parcel", recipients=("carol@example.com", "dave@example.net"))
    t.advance(60)  # type: ignore[attr-defined]
    put(store, 4, "Policy", "Virus", sender="ALICE@EXAMPLE.ORG", subject="quarterly REPORT v2",
        attachment=("report.pdf", 200), gateway="gw2.example.com", origin_ip="10.9.9.9")
    t.advance(60)  # type: ignore[attr-defined]
    put(store, 5, ("HR", "content filter:salary_terms"), sender="bob@example.com",
        subject="Salary review")
    t.advance(60)  # type: ignore[attr-defined]
    put(store, 6, "Policy", sender="zed@example.org", subject="Report")
    return store


@pytest.fixture
def store(make_store: object) -> QuarantineStore:
    from pvoq.quarantine.settings import DAY, QuarantineSettings, merge_settings

    settings = merge_settings([QuarantineSettings("HR", 5 * DAY, "release", False)])
    return make_store(settings=settings)  # type: ignore[operator, no-any-return]


class TestFilters:
    def test_all_newest_first_with_total(self, filled: QuarantineStore) -> None:
        """Without filters every held message is found, newest first, with the total."""
        rows, total = filled.search(SearchQuery())
        assert total == 6 and [r["id"] for r in rows] == [6, 5, 4, 3, 2, 1]

    def test_quarantines(self, filled: QuarantineStore) -> None:
        """Quarantine filters find messages held in any of the named quarantines."""
        assert mids(filled, quarantines=("Virus",)) == [4, 2]
        assert mids(filled, quarantines=("HR", "Outbreak")) == [5, 3]

    def test_received_range(self, filled: QuarantineStore, clock: object) -> None:
        """The received range is from (inclusive) to (exclusive)."""
        start = clock.now - 300  # type: ignore[attr-defined]
        assert mids(filled, received_from=start + 60, received_to=start + 180) == [3, 2]

    @pytest.mark.parametrize(("op", "value", "expected"), [
        ("contains", "example.org", [6, 4, 1]),
        ("does_not_contain", "example.org", [5, 3, 2]),
        ("starts_with", "alice@", [4, 1]),
        ("does_not_start_with", "alice@", [6, 5, 3, 2]),
        ("ends_with", ".example", [3, 2]),
        ("does_not_end_with", ".example", [6, 5, 4, 1]),
        ("is", "alice@example.org", [4, 1]),
        ("is_not", "alice@example.org", [6, 5, 3, 2]),
    ])
    def test_sender_operators(self, filled: QuarantineStore, op: str, value: str,
                              expected: list[int]) -> None:
        """Each sender operator and its negation, ignoring case."""
        assert mids(filled, sender=TextFilter(op, value)) == expected

    def test_subject_contains_ignores_case(self, filled: QuarantineStore) -> None:
        """A subject search ignores case."""
        assert mids(filled, subject=TextFilter("contains", "REPORT")) == [6, 4, 1]

    def test_wildcards_are_literal(self, filled: QuarantineStore) -> None:
        """% and _ in a search value match themselves only."""
        assert mids(filled, subject=TextFilter("contains", "100%_")) == [2]
        assert mids(filled, subject=TextFilter("contains", "%")) == [2]

    def test_recipient(self, filled: QuarantineStore) -> None:
        """A recipient filter matches any envelope recipient of the message."""
        assert mids(filled, recipient=TextFilter("ends_with", "example.net")) == [3]
        assert 3 not in mids(filled, recipient=TextFilter("does_not_contain", "dave"))

    def test_reason(self, filled: QuarantineStore) -> None:
        """The reason itself is searchable: virus name, outbreak rule, filter name."""
        assert mids(filled, reason=TextFilter("contains", "eicar")) == [2]
        assert mids(filled, reason=TextFilter("contains", "OUTBREAK_0001")) == [3]
        assert mids(filled, reason=TextFilter("contains", "salary")) == [5]

    def test_attachment_name_and_size(self, filled: QuarantineStore) -> None:
        """Attachment name and size bounds find messages with such an attachment."""
        assert mids(filled, attachment_name=TextFilter("ends_with", ".exe")) == [2]
        assert mids(filled, attachment_min_size=1000) == [2]
        assert mids(filled, attachment_max_size=1000) == [4]
        assert mids(filled, attachment_min_size=100, attachment_max_size=10000) == [4, 2]

    def test_gateway(self, filled: QuarantineStore) -> None:
        """The originating gateway matches by host name or by IP address."""
        assert mids(filled, gateway="GW2.example.com") == [4]
        assert mids(filled, gateway="10.9.9.9") == [4]

    def test_filters_combine(self, filled: QuarantineStore) -> None:
        """Filters combine with AND."""
        assert mids(filled, quarantines=("Policy",),
                    subject=TextFilter("contains", "report"),
                    sender=TextFilter("starts_with", "alice")) == [4, 1]

    def test_only_held_messages(self, filled: QuarantineStore) -> None:
        """Messages no longer held in the searched quarantine are not found."""
        filled.act(4, RELEASED, "Virus")
        filled.act(1, DELETED)
        assert mids(filled, quarantines=("Virus",)) == [2]
        assert mids(filled, quarantines=("Policy",)) == [6, 4]


class TestSortAndPage:
    def test_sort_by_each_key(self, filled: QuarantineStore) -> None:
        """Results sort by sender, subject, received, scheduled exit or size."""
        by_sender = mids(filled, order_by="sender", order_dir="asc")
        assert by_sender[-1] == 6 and by_sender[0] in (1, 4)
        assert mids(filled, order_by="received", order_dir="asc") == [1, 2, 3, 4, 5, 6]
        assert mids(filled, order_by="size", order_dir="desc")[0] == 2
        # Outbreak keeps 1 day, HR 5, Policy 10, Virus 30.
        assert mids(filled, order_by="scheduled_exit", order_dir="asc")[:2] == [3, 5]
        assert mids(filled, order_by="subject", order_dir="asc")[0] == 2

    def test_one_quarantine_sorted_by_exit_and_received(self, filled: QuarantineStore) -> None:
        """Within one quarantine, pages follow the scheduled exit or the received time."""
        filled.delay(1, 7 * 86400.0, "Policy")
        assert mids(filled, quarantines=("Policy",), order_by="scheduled_exit",
                    order_dir="asc") == [4, 6, 1]
        assert mids(filled, quarantines=("Policy",), order_by="received",
                    order_dir="asc", limit=2, offset=1) == [4, 6]
        assert mids(filled, quarantines=("Virus",),
                    reason=TextFilter("contains", "viral"), order_by="received") == [2]

    def test_pages_cover_everything_once(self, filled: QuarantineStore) -> None:
        """Consecutive pages give every result exactly once and the same total."""
        seen: list[int] = []
        for offset in range(0, 6, 4):
            rows, total = filled.search(SearchQuery(limit=4, offset=offset))
            assert total == 6
            seen += [r["id"] for r in rows]
        assert seen == [6, 5, 4, 3, 2, 1]

    def test_result_row_shape(self, filled: QuarantineStore) -> None:
        """A result carries envelope, gateway and every quarantine with its reason."""
        rows, _ = filled.search(SearchQuery(quarantines=("Virus",), limit=20))
        row = rows[-1]
        assert row["id"] == 2 and row["origin_host"] == "gw1.example.com"
        assert row["quarantines"][0]["reason"] == "a/v verdict:VIRAL Eicar-Test-Signature"
        assert row["recipients"] == [{"rid": 0, "address": "bob@example.com"}]


class TestBoundedTotals:
    def test_count_stops_at_the_cap(self, filled: QuarantineStore) -> None:
        """Above the cap a filtered total is the cap, inexact; the page is whole."""
        query = SearchQuery(subject=TextFilter("contains", "report"))
        rows, total, exact = filled.search_counted(query, cap=2)
        assert (total, exact) == (2, False) and [r["id"] for r in rows] == [6, 4, 1]
        assert filled.search_counted(query, cap=3)[1:] == (3, True)
        assert filled.search_counted(query)[1:] == (3, True)   # the default cap, 10,000
        assert filled.search(query)[1] == 3                    # search() counts exactly

    def test_counter_totals_stay_exact(self, filled: QuarantineStore) -> None:
        """Everything and one quarantine are counted by the counters: never capped."""
        assert filled.search_counted(SearchQuery(), cap=2)[1:] == (6, True)
        assert filled.search_counted(SearchQuery(quarantines=("Policy",)), cap=1)[1:] == (3, True)
        two = SearchQuery(quarantines=("Policy", "HR"))
        assert filled.search_counted(two, cap=1)[1:] == (1, False)

    def test_sets_and_rows_both_capped(self, filled: QuarantineStore) -> None:
        """A count over intersected sets and one over message rows both stop at the cap."""
        sets = SearchQuery(quarantines=("Policy", "Virus"), attachment_min_size=100)
        rows = SearchQuery(sender=TextFilter("ends_with", ".org"))
        assert filled.search_counted(sets, cap=1)[1:] == (1, False)
        assert filled.search_counted(rows, cap=1)[1:] == (1, False)
        assert filled.search_counted(rows, cap=None)[1:] == (3, True)

    def test_described(self) -> None:
        """The console's words for a total."""
        assert describe_total(1234, True) == "1,234"
        assert describe_total(TOTAL_CAP, False) == "more than 10,000"


class TestPagePlans:
    def test_walk_threshold_grows_with_the_held_messages(self) -> None:
        """Sorting the matches beats walking the index below √((offset + limit) × held)."""
        page = SearchQuery(limit=20)
        assert qsearch.walk_above(page, 1_000_000) == 4472
        assert qsearch.walk_above(page, 10_000_000) == 14142
        assert qsearch.walk_above(page, 1000) == qsearch.WALK_INDEX_ABOVE
        assert qsearch.walk_above(SearchQuery(limit=20, offset=980), 1_000_000) == 31622

    def test_postgresql_walks_only_above_the_threshold(self) -> None:
        """Matches under the threshold are sorted; over it the held index is walked."""
        q = SearchQuery(recipient=TextFilter("is", "bob@example.com"), limit=20)
        sort, _ = compile_query(q, "postgresql", total=5000, walk_from=14142)
        walk, _ = compile_query(q, "postgresql", total=5000, walk_from=4472)
        assert "messages.state" not in str(sort) and "messages.state" in str(walk)

    def test_a_reason_walk_filters_by_any_of_the_reasons(self) -> None:
        """One quarantine's reason search walks with the reason ids as a filter."""
        q = SearchQuery(quarantines=("Virus",), reason=TextFilter("contains", "eicar"))
        walk, _ = compile_query(q, "postgresql", total=50_000)
        sort, _ = compile_query(q, "postgresql", total=50)
        assert "ANY (array(" in str(walk) and "ANY" not in str(sort)


class TestQueryValues:
    def test_bad_operator_sort_and_page(self) -> None:
        """Unknown operators, sort keys, directions and negative pages are refused."""
        with pytest.raises(SearchError):
            TextFilter("near", "x")
        with pytest.raises(SearchError):
            SearchQuery(order_by="colour")
        with pytest.raises(SearchError):
            SearchQuery(order_dir="up")
        with pytest.raises(SearchError):
            SearchQuery(limit=0)

    def test_json_round_trip(self) -> None:
        """A query survives JSON (saved searches, the admin socket)."""
        q = SearchQuery(quarantines=("Policy",), sender=TextFilter("ends_with", ".org"),
                        attachment_min_size=10, order_by="size", limit=50)
        assert SearchQuery.from_json(q.to_json()) == q

    def test_like_patterns(self) -> None:
        """Operators become LIKE patterns with wildcards escaped."""
        assert like_pattern("contains", "a%b") == "%a\\%b%"
        assert like_pattern("starts_with", "x_") == "x\\_%"
        assert like_pattern("ends_with", "y") == "%y"
        assert like_pattern("is", "z") == "z"

    def test_compiles_for_both_dialects(self) -> None:
        """The same query compiles to LIKE on SQLite and lower() LIKE on PostgreSQL."""
        q = SearchQuery(subject=TextFilter("contains", "Invoice"))
        lite, _ = compile_query(q, "sqlite")
        pg, _ = compile_query(q, "postgresql")
        assert "lower(messages.subject)" not in str(lite)
        assert "lower(messages.subject)" in str(pg)
