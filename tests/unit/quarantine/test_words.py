"""Tests for pvoq.quarantine.words: PostgreSQL's search words answer text filters exactly
as the trigram plan does, follow the messages in and out, and are filled by revision 0007."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest
from qhelpers import body, meta
from sqlalchemy import text

from pvoq.quarantine import recipients as qrecipients
from pvoq.quarantine import words
from pvoq.quarantine.migrate import migrate
from pvoq.quarantine.search import TOTAL_CAP, SearchQuery, TextFilter
from pvoq.quarantine.store import RELEASED, QuarantineStore
from pvoq.testing.pgserver import PostgresServer

LONG = "x" * 150 + "needle" + "y" * 300   # one 456-character word: the needle spans pieces
SUBJECTS = [
    "RE: Claim: action required", "claims\tpending", "Reclaim your PRIZE", "claim",
    "Invoice 100%_paid", "FW: invoice for Tara", LONG, "café CLAIM #42", "  padded  ",
    "[External] invoice (12345)", "", "claim claim claim", "winner\nnotice", "vertical\vtab",
    "Résumé CAFÉ",
]
SENDERS = ["tara.ivanova12@mail1.example", "TARA.IVANOVA7@gmail.example", "ben.chen@corp2.example",
           "noreply@gmail.example", "odd%_name@x.example"]
RECIPIENTS = [("bob@example.com",), ("Bob@Example.com", "bob@example.com"),
              ("carol@example.com", "dave@example.net"), ("eve@example.org",)]


@pytest.fixture
def store(postgres: PostgresServer, tmp_path: Path) -> Any:
    s = QuarantineStore(postgres.create_database(f"w_{uuid.uuid4().hex[:12]}"),
                        tmp_path / "bodies")
    yield s
    s.close()


GATEWAYS = [("gw1.example.com", "10.1.2.1"), ("GW2.Example.com", "10.1.2.2"),
            ("gw3.example.com", "10.1.2.1")]


def fill(store: QuarantineStore, n: int = 40) -> list[int]:
    """*n* messages cycling through the subjects, senders, recipients and gateways above."""
    mids = []
    for i, subject, sender, rcpts, (gateway, ip) in zip(
            range(1, n + 1), itertools.cycle(SUBJECTS), itertools.cycle(SENDERS),
            itertools.cycle(RECIPIENTS), itertools.cycle(GATEWAYS)):
        store.add(mid=i, meta=meta("Policy", sender=sender, recipients=rcpts, gateway=gateway),
                  body=body(), origin_ip=ip, subject=subject)
        mids.append(i)
    return mids


def without_words(store: QuarantineStore, query: SearchQuery, cap: int | None
                  ) -> tuple[list[int], int, bool, list[int]]:
    """What the trigram plan alone answers: the page, the total, whether exact, and
    every match (a bulk action's)."""
    real = store._words
    store._words = lambda conn, q: {}  # type: ignore[method-assign]
    try:
        rows, total, exact = store.search_counted(query, cap)
        every = store.search_ids(query)
    finally:
        store._words = real  # type: ignore[method-assign]
    return [r["id"] for r in rows], total, exact, every


def same_as_trigrams(store: QuarantineStore, query: SearchQuery) -> list[int]:
    """The query answered with and without the words: same page, same total, any cap,
    and the same matches for a bulk action."""
    for cap in (None, 0, 2, 7, TOTAL_CAP):
        rows, total, exact = store.search_counted(query, cap)
        assert ([r["id"] for r in rows], total, exact, store.search_ids(query)) == \
            without_words(store, query, cap), (query, cap)
    return [r["id"] for r in store.search_counted(query, None).rows]


FILTERS = [
    ("subject", "contains", "claim"), ("subject", "contains", "CLAIM:"),
    ("subject", "contains", "invoice"), ("subject", "contains", "vertical"),
    ("subject", "contains", "needle"), ("subject", "contains", "y" * 100),
    ("subject", "contains", "100%_"), ("subject", "contains", "café"),
    ("subject", "contains", "CAFÉ"), ("subject", "contains", "é"),
    ("subject", "contains", "nothing-like-it"), ("subject", "contains", "ai"),
    ("subject", "contains", "claim claim"), ("subject", "starts_with", "re:"),
    ("subject", "is", "claim"), ("subject", "does_not_contain", "claim"),
    ("sender", "contains", "tara.ivanova"), ("sender", "ends_with", "@gmail.example"),
    ("sender", "starts_with", "TARA"), ("sender", "is", "ben.chen@corp2.example"),
    ("sender", "contains", "%_"), ("sender", "is_not", "noreply@gmail.example"),
    ("recipient", "is", "BOB@example.com"), ("recipient", "contains", "example.net"),
    ("recipient", "ends_with", ".org"), ("recipient", "does_not_contain", "bob"),
]


class TestSameAnswers:
    @pytest.mark.parametrize(("name", "op", "value"), FILTERS)
    @pytest.mark.parametrize("order_dir", ["desc", "asc"])
    def test_one_filter(self, store: QuarantineStore, name: str, op: str, value: str,
                        order_dir: str) -> None:
        """Every page (limit 3) and total is the trigram plan's, newest or oldest first."""
        fill(store)
        query = SearchQuery(**{name: TextFilter(op, value)}, order_dir=order_dir, limit=3)
        everything = same_as_trigrams(store, query.page(100, 0))
        paged = [m for offset in range(0, len(everything) + 3, 3)
                 for m in same_as_trigrams(store, query.page(3, offset))]
        assert paged == everything

    def test_the_words_answer_where_they_can(self, store: QuarantineStore) -> None:
        """The filters the words answer find what a plain look at the rows finds."""
        fill(store)
        claim = SearchQuery(subject=TextFilter("contains", "claim"), limit=100)
        rows = store.search(claim)[0]
        assert {r["id"] for r in rows} == {
            i for i in range(1, 41) if "claim" in SUBJECTS[(i - 1) % len(SUBJECTS)].lower()}
        needle = store.search(SearchQuery(subject=TextFilter("contains", "needle")))[0]
        assert [r["id"] for r in needle] == [
            i for i in range(40, 0, -1) if SUBJECTS[(i - 1) % len(SUBJECTS)] == LONG]
        with store.engine.connect() as conn:
            assert store._words(conn, claim).keys() == {"subject"}
            spaced = SearchQuery(subject=TextFilter("contains", "claim claim"))
            assert store._words(conn, spaced) == {}

    @pytest.mark.parametrize("extra", [
        {"gateway": "gw1.example.com"}, {"gateway": "gw2.example.com"},
        {"gateway": "10.1.2.1"}, {"gateway": "gw9.example.com"}, {"quarantines": ("Policy",)},
        {"order_by": "sender"}, {"subject": TextFilter("contains", "invoice")},
        {"recipient": TextFilter("is", "bob@example.com")}])
    def test_combined_with_other_filters(self, store: QuarantineStore,
                                         extra: dict[str, Any]) -> None:
        """With other filters or another sort the words are one set among the others."""
        fill(store)
        query = SearchQuery(**{"sender": TextFilter("contains", "example"), **extra}, limit=5)
        found = same_as_trigrams(store, query)
        assert found or extra == {"gateway": "gw9.example.com"}

    def test_the_gateway_is_tested_on_the_words(self, store: QuarantineStore) -> None:
        """Beside a text filter the words answer, the gateway goes with the words."""
        fill(store)
        query = SearchQuery(gateway="GW2.example.com", subject=TextFilter("contains", "claim"))
        with store.engine.connect() as conn:
            found = store._words(conn, query)
        assert found["subject"].gateway == "GW2.example.com"
        assert same_as_trigrams(store, query) == [
            i for i in range(40, 0, -1) if i % 3 == 2
            and "claim" in SUBJECTS[(i - 1) % len(SUBJECTS)].lower()]


    def test_too_many_words_keep_the_trigram_plan(self, store: QuarantineStore,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        """A pattern matching more distinct words than the limit is not sent to the words."""
        fill(store)
        claim = SearchQuery(subject=TextFilter("contains", "claim"))
        with store.engine.connect() as conn:
            assert len(store._words(conn, claim)["subject"].words) == 4
            monkeypatch.setattr(words, "MAX_SHARED_WORDS", 3)
            assert store._words(conn, claim) == {}
            tara = SearchQuery(sender=TextFilter("contains", "tara"))
            assert len(store._words(conn, tara)["sender"].words) == 2  # senders: MAX_WORDS
            monkeypatch.setattr(words, "MAX_WORDS", 1)
            assert store._words(conn, tara) == {}
        assert same_as_trigrams(store, claim)


class TestFollowTheMessages:
    def test_rows_per_message(self, store: QuarantineStore) -> None:
        """Sender whole, recipients once each, subject words once each; long ones in pieces."""
        fill(store, len(SUBJECTS))
        with store.engine.connect() as conn:
            got = conn.execute(text("SELECT field, word FROM search_words WHERE message_id = 2 "
                                    "ORDER BY field, word")).all()
            assert [tuple(r) for r in got] == [
                ("j", "claims"), ("j", "pending"), ("r", "bob@example.com"),
                ("s", "tara.ivanova7@gmail.example")]
            pieces = conn.execute(text("SELECT word FROM search_words WHERE message_id = 7 "
                                       "AND field = 'j' ORDER BY word")).scalars().all()
            assert all(len(p) <= words.PIECE for p in pieces) and len(pieces) == 4
            assert sum("needle" in p for p in pieces) >= 1
            assert conn.execute(text("SELECT count(*) FROM search_words "
                                     "WHERE message_id = 11 AND field = 'j'")).scalar() == 0

    def test_settled_messages_leave(self, store: QuarantineStore) -> None:
        """A released message's words go with its settlement; its dictionary word stays
        (until a pruning pass: `TestPruning`)."""
        fill(store, 4)
        assert store.act(4, RELEASED).settled == RELEASED
        query = SearchQuery(subject=TextFilter("is", "claim"))
        assert store.search(SearchQuery(subject=TextFilter("contains", "claim")))[1] == 3
        assert store.search(query)[1] == 0
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM search_words "
                                     "WHERE message_id = 4")).scalar() == 0
            assert conn.execute(text("SELECT count(*) FROM search_vocabulary "
                                     "WHERE word = 'claim'")).scalar() == 1

    def test_a_split_moves_recipient_words(self, store: QuarantineStore) -> None:
        """Recipients split off to a new message take their words with them."""
        fill(store, 3)   # message 3: carol and dave
        assert qrecipients.split(store, 3, ["dave@example.net"], 99) == 99
        dave = SearchQuery(recipient=TextFilter("is", "dave@example.net"))
        carol = SearchQuery(recipient=TextFilter("contains", "carol"))
        assert [r["id"] for r in store.search(dave)[0]] == [99]
        assert [r["id"] for r in store.search(carol)[0]] == [3]
        reclaim = SearchQuery(subject=TextFilter("contains", "reclaim"))
        assert [r["id"] for r in store.search(reclaim)[0]] == [99, 3]
        assert same_as_trigrams(store, dave) == [99]


class TestPruning:
    """Words no held message has any more leave the dictionary, a chunk at a time."""

    @staticmethod
    def vocabulary(store: QuarantineStore) -> set[tuple[str, str]]:
        with store.engine.connect() as conn:
            return {(f, w) for f, w in conn.execute(
                text("SELECT field, word FROM search_vocabulary"))}

    @staticmethod
    def used(store: QuarantineStore) -> set[tuple[str, str]]:
        with store.engine.connect() as conn:
            return {(f, w) for f, w in conn.execute(
                text("SELECT DISTINCT field, word FROM search_words"))}

    def test_a_pass_drops_exactly_the_words_without_rows(self, store: QuarantineStore,
                                                         monkeypatch: Any) -> None:
        monkeypatch.setattr(words, "PRUNE_CHUNK", 3)  # many chunks over 40 messages' words
        mids = fill(store, 40)
        for mid in mids[::3]:
            assert store.act(mid, RELEASED).settled == RELEASED
        before = self.vocabulary(store)
        assert self.used(store) < before  # some words left with the released messages
        dropped = 0
        for _ in range(len(before)):  # bounded: a chunk drops at least nothing
            dropped += store.prune_vocabulary()
            if store._prune_after == ("", ""):
                break
        assert self.vocabulary(store) == self.used(store)
        assert dropped == len(before) - len(self.used(store))
        # The answers are the trigram plan's still, and a word comes back with new mail.
        assert same_as_trigrams(store, SearchQuery(subject=TextFilter("contains", "claim")))
        gone = sorted(before - self.used(store))[0]
        store.add(mid=500, meta=meta("Policy", sender="new@x.example"), body=body(),
                  origin_ip="10.1.2.9", subject=gone[1] if gone[0] == "j" else "fresh")
        assert (("j", gone[1]) if gone[0] == "j" else ("s", "new@x.example")) \
            in self.vocabulary(store)

    def test_a_batch_adding_words_and_a_chunk_exclude_each_other(
            self, store: QuarantineStore) -> None:
        """A batch that found a word in the dictionary holds the lock until it commits, so
        no chunk drops that word under it; a chunk holds it alone until it commits."""
        fill(store, 4)
        lock = words.VOCABULARY_LOCK
        with store.engine.connect() as batch, store.engine.connect() as other:
            words.index_words(batch, [1])  # in the batch's transaction, not committed
            assert other.execute(text(f"SELECT pg_try_advisory_xact_lock({lock})")
                                 ).scalar() is False
            assert other.execute(text(f"SELECT pg_try_advisory_xact_lock_shared({lock})")
                                 ).scalar() is True  # batches do not wait for each other
            batch.rollback()
            other.rollback()
            words.prune_vocabulary(batch, ("", ""))  # a chunk, not committed
            assert other.execute(text(f"SELECT pg_try_advisory_xact_lock_shared({lock})")
                                 ).scalar() is False
            batch.rollback()
            other.rollback()

    def test_sqlite_has_nothing_to_prune(self, tmp_path: Path) -> None:
        lite = QuarantineStore(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "bodies")
        try:
            lite.add(mid=1, meta=meta("Policy"), body=body(), origin_ip="10.0.0.1",
                     subject="anything")
            assert lite.act(1, RELEASED).settled == RELEASED
            assert lite.prune_vocabulary() == 0
        finally:
            lite.close()


class TestAnswerable:
    def test_rules(self) -> None:
        assert words.answerable("subject", "contains", "claim")
        assert not words.answerable("subject", "contains", "claim it")
        assert not words.answerable("subject", "contains", "tab\there")
        assert not words.answerable("subject", "starts_with", "claim")
        assert not words.answerable("subject", "contains", "x" * (words.MAX_VALUE + 1))
        assert words.answerable("sender", "ends_with", "@gmail.example")
        assert words.answerable("recipient", "is", "bob@example.com")
        assert not words.answerable("gateway", "is", "gw1")
        assert not words.answerable("sender", "contains", "")


class TestRevision0007:
    def test_fills_the_words_of_held_messages(self, store: QuarantineStore) -> None:
        """A database from before the words gets them for its held messages only."""
        fill(store, 6)
        store.act(6, RELEASED)
        with store.engine.begin() as conn:
            before = conn.execute(text("SELECT field, word, message_id FROM search_words "
                                       "ORDER BY 1, 2, 3")).all()
            conn.execute(text("DROP TABLE search_words, search_vocabulary"))
            conn.execute(text("UPDATE alembic_version SET version_num = '0006'"))
        assert migrate(store.engine) == "0009"
        with store.engine.connect() as conn:
            after = conn.execute(text("SELECT field, word, message_id FROM search_words "
                                      "ORDER BY 1, 2, 3")).all()
            indexes = conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename "
                                        "IN ('search_words', 'search_vocabulary')")).scalars()
            assert {"ix_search_words_word", "ix_search_words_mid",
                    "ix_search_vocabulary_trgm"} <= set(indexes)
        assert after == before and all(m != 6 for _, _, m in after)
        assert same_as_trigrams(store, SearchQuery(subject=TextFilter("contains", "claim")))
