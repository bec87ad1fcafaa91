"""Search words (PostgreSQL): an ordered inverted index of the held messages' senders,
recipients and subject words, and the dictionary of the words it holds.

At ten million held messages a trigram "contains" on `messages` builds the
bitmap of every match before it can count ten thousand of them or page the
newest twenty: a common subject word is hundreds of thousands of posting
entries, a common name in senders tens of thousands, about a second of CPU.
Here each held message has one row per word in `search_words`, ordered by
(field, word, received time, MID), and `search_vocabulary` holds each distinct
word once with a trigram index. A text filter then looks its pattern up among
the distinct words (a few hundred thousand, not ten million messages) and
follows the few words that match in order: the newest page reads a page per
word, a capped count reads at most the cap.

The words of a field:

- sender (`s`) and each recipient (`r`): the whole address, lowercased;
- subject (`j`): the lowercased subject split at ASCII white space, each
  piece kept whole when it has at most `PIECE` characters, else as pieces of
  `PIECE` characters every `PIECE // 2`, so any run of `PIECE // 2` or
  fewer characters inside it lies whole in one piece.

So a case-insensitive "contains" of a value without ASCII white space holds
for a subject exactly when one of its words contains the value; sender and
recipient filters (contains, starts with, ends with, is) hold when the
address word matches. What the words cannot answer exactly (a subject's
start, end or whole value, a value with white space or longer than
`MAX_VALUE`, a negated filter, or a pattern matching more than `MAX_WORDS`
distinct senders or `MAX_SHARED_WORDS` distinct recipients or subject words)
keeps the trigram plan of `quarantine.search`. A gateway filter beside a
text filter is tested on the words' index entries, which carry their
message's gateway.

Rows enter in the transaction that stores a message (`index_words`, one
statement for a batch) and leave in the one that claims its settlement
(`unindex_words`), as SQLite's trigram tables do, so the words hold held mail
only. The lowercasing and the split are PostgreSQL's own, one SQL definition
for the store, the migration that fills the words of a database
(revision `0007`) and the bench's bulk load.

A word whose messages have all left stays in the dictionary until
`prune_vocabulary` takes it out: a chunk of the dictionary at a time, in word
order, each word without a row dropped, a pass over the whole dictionary
after another (the manager runs a chunk with each expiry pass). A batch
that adds words holds `VOCABULARY_LOCK` shared for its transaction and a
chunk holds it alone, so a word is never dropped between a batch finding it
in the dictionary and that batch's rows being committed (the lock is the
database's: managers sharing one take turns too).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, Text, any_, bindparam, column, select, table, text
from sqlalchemy.engine import Connection

SENDER, RECIPIENT, SUBJECT = "s", "r", "j"
FIELDS = {"sender": SENDER, "recipient": RECIPIENT, "subject": SUBJECT}
SEPARATORS = " \t\n\r\f\v"
PIECE = 200               # a subject word's longest piece (characters)
MAX_VALUE = PIECE // 2    # the longest value the words answer
MAX_WORDS = 1000          # more distinct words matching: the trigram plan instead
# ... of a field where a message holds several words (recipients, subject): a count below
# the cap is a distinct count over at most this many words' capped rows.
MAX_SHARED_WORDS = 64

search_words = table("search_words", column("field"), column("word"), column("received_at"),
                     column("message_id"), column("origin"), column("origin_ip"))

# Each row carries its message's gateway (the host lowercased, and the IP), in the index
# too: a gateway filter beside a text filter is tested on the words' own index entries,
# not by looking up each candidate message (about 5 µs each; 20,000 for a common name).
DDL = [
    "CREATE TABLE IF NOT EXISTS search_words (field char(1) NOT NULL, word text NOT NULL, "
    "received_at double precision NOT NULL, message_id bigint NOT NULL, "
    "origin text NOT NULL, origin_ip text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS search_vocabulary (field char(1) NOT NULL, "
    "word text NOT NULL, PRIMARY KEY (field, word))",
]
INDEXES = [
    "CREATE INDEX IF NOT EXISTS ix_search_words_word "
    "ON search_words (field, word, received_at, message_id) INCLUDE (origin, origin_ip)",
    "CREATE INDEX IF NOT EXISTS ix_search_words_mid ON search_words (message_id)",
    "CREATE INDEX IF NOT EXISTS ix_search_vocabulary_trgm "
    "ON search_vocabulary USING gin (word gin_trgm_ops)",
]


def words_of(where: str) -> str:
    """The SQL of the word rows (field, word, received_at, message_id, origin, origin_ip)
    of the messages `m` that *where* selects (a condition on `m`)."""
    return f"""
SELECT 's' AS field, lower(m.sender) AS word, m.received_at, m.id AS message_id,
       lower(m.origin_host) AS origin, m.origin_ip
  FROM messages m WHERE {where}
UNION ALL
SELECT 'r', x.word, m.received_at, m.id, lower(m.origin_host), m.origin_ip FROM messages m
  CROSS JOIN LATERAL (SELECT DISTINCT lower(r.address) AS word FROM message_recipients r
                      WHERE r.message_id = m.id) AS x
  WHERE {where}
UNION ALL
SELECT 'j', x.word, m.received_at, m.id, lower(m.origin_host), m.origin_ip FROM messages m
  CROSS JOIN LATERAL (
    SELECT DISTINCT w AS word
      FROM regexp_split_to_table(lower(m.subject), E'[ \\t\\n\\r\\f\\x0b]+') AS t
      CROSS JOIN LATERAL unnest(CASE WHEN length(t) <= {PIECE} THEN ARRAY[t] ELSE ARRAY(
          SELECT substr(t, g, {PIECE})
            FROM generate_series(1, length(t) - {PIECE // 2}, {PIECE // 2}) AS g) END) AS w
     WHERE t <> '') AS x
  WHERE {where}
"""


def fill_sql(where: str) -> str:
    """One statement: the word rows of the messages *where* selects, and their new words
    in the dictionary (taken in word order, so two writers never deadlock on them)."""
    return f"""
WITH w AS ({words_of(where)}),
v AS (INSERT INTO search_vocabulary (field, word)
      SELECT DISTINCT field, word FROM w ORDER BY field, word ON CONFLICT DO NOTHING)
INSERT INTO search_words (field, word, received_at, message_id, origin, origin_ip)
SELECT field, word, received_at, message_id, origin, origin_ip FROM w
"""


# Every held message's words at once (a database that had none: revision `0007`, the
# bench's bulk load), run before `INDEXES` are built.
FILL_ALL = [
    "INSERT INTO search_words (field, word, received_at, message_id, origin, origin_ip) "
    + words_of("m.state = 'held'"),
    "INSERT INTO search_vocabulary (field, word) SELECT DISTINCT field, word "
    "FROM search_words ON CONFLICT DO NOTHING",
]

_FILL = text(fill_sql("m.id = ANY(:mids)"))
_EMPTY = text("DELETE FROM search_words WHERE message_id = ANY(:mids)")
VOCABULARY_LOCK = 0x70766F71766F6361  # "pvoqvoca": PostgreSQL advisory lock key
_SHARED = text(f"SELECT pg_advisory_xact_lock_shared({VOCABULARY_LOCK})")
_ALONE = text(f"SELECT pg_advisory_xact_lock({VOCABULARY_LOCK})")
# One chunk of the dictionary after (:field, :word), in word order: its words without a
# row dropped; how many, and the chunk's last word (NULL: the dictionary's end).
_PRUNE = text("""
WITH chunk AS (SELECT field, word FROM search_vocabulary
                WHERE (field, word) > (:field, :word) ORDER BY field, word LIMIT :n),
gone AS (DELETE FROM search_vocabulary v USING chunk c
          WHERE v.field = c.field AND v.word = c.word
            AND NOT EXISTS (SELECT 1 FROM search_words w
                             WHERE w.field = c.field AND w.word = c.word)
          RETURNING 1),
last AS (SELECT field, word FROM chunk ORDER BY field DESC, word DESC LIMIT 1)
SELECT (SELECT count(*) FROM gone), (SELECT field FROM last), (SELECT word FROM last),
       (SELECT count(*) FROM chunk)
""")
PRUNE_CHUNK = 2000  # dictionary words looked at in one transaction


def index_words(conn: Connection, mids: list[int]) -> None:
    """The words of the messages *mids* (their rows and recipients written already)."""
    if mids:
        conn.execute(_SHARED)  # no chunk of `prune_vocabulary` until this commits
        conn.execute(_FILL, {"mids": mids})


def prune_vocabulary(conn: Connection, after: tuple[str, str],
                     limit: int = PRUNE_CHUNK) -> tuple[int, tuple[str, str] | None]:
    """Drop the words of one chunk of the dictionary (the *limit* words after *after*, a
    (field, word) key; ("", "") from the start) that no held message has any more: how
    many, and the key to go on after (None: the end of the dictionary was reached).
    Holds `VOCABULARY_LOCK` alone until the caller's transaction ends."""
    conn.execute(_ALONE)
    dropped, field, word, seen = conn.execute(
        _PRUNE, {"field": after[0], "word": after[1], "n": limit}).one()
    if field is None or int(seen) < limit:
        return int(dropped), None
    return int(dropped), (str(field), str(word))


def unindex_words(conn: Connection, mids: list[int]) -> None:
    """The messages *mids* leave the words (their settlement is claimed)."""
    if mids:
        conn.execute(_EMPTY, {"mids": mids})


def reindex_words(conn: Connection, mids: list[int]) -> None:
    """The words of *mids* again, from their rows as they are now."""
    unindex_words(conn, mids)
    index_words(conn, mids)


@dataclass(frozen=True)
class WordSet:
    """The distinct words of *field* a text filter matches; with *gateway*, of the
    messages from that gateway only (its host name, any case, or its IP)."""

    field: str
    words: tuple[str, ...]
    gateway: str | None = None

    @property
    def unique(self) -> bool:
        """Whether a message appears at most once among the rows of these words."""
        return self.field == SENDER or len(self.words) <= 1

    def ids(self) -> Any:
        """The MIDs holding these words (a select of one column)."""
        sw = search_words.c
        found = select(sw.message_id).where(
            sw.field == self.field,
            sw.word == any_(bindparam(None, list(self.words), type_=ARRAY(Text))))
        if self.gateway is not None:
            found = found.where((sw.origin == self.gateway.lower())
                                | (sw.origin_ip == self.gateway))
        return found

    def args(self) -> dict[str, Any]:
        """The parameters of the statements below (`:field`, `:words`, `:origin`, `:ip`)."""
        gateway = self.gateway or ""
        return {"field": self.field, "words": list(self.words), "origin": gateway.lower(),
                "ip": gateway}


def answerable(name: str, op: str, value: str) -> bool:
    """Whether the words answer filter *name* with the positive operator *op* exactly."""
    if name not in FIELDS or not value or len(value) > MAX_VALUE:
        return False
    if name == "subject":
        return op == "contains" and not any(c in SEPARATORS for c in value)
    return op in ("contains", "starts_with", "ends_with", "is")


_LOOKUP = text("SELECT word FROM search_vocabulary WHERE field = :field "
               "AND word LIKE :pattern ESCAPE '\\' LIMIT :limit")


def lookup(conn: Connection, name: str, op: str, value: str, pattern: str) -> WordSet | None:
    """The words filter *name* (`op` *value*, LIKE *pattern*) matches; None when the
    words cannot answer it (`answerable`) or too many match. The value is lowercased as
    the trigram plan lowercases it (`search.text_condition`), the words by the database."""
    if not answerable(name, op, value):
        return None
    field = FIELDS[name]
    if op == "is":
        return WordSet(field, (value.lower(),))
    most = MAX_WORDS if field == SENDER else MAX_SHARED_WORDS
    found = [w for (w,) in conn.execute(_LOOKUP, {"field": field, "pattern": pattern.lower(),
                                                  "limit": most + 1})]
    if len(found) > most:
        return None
    return WordSet(field, tuple(sorted(found)))


_PAGE = """
SELECT t.message_id FROM unnest(CAST(:words AS text[])) AS u(word)
CROSS JOIN LATERAL (
  SELECT s.message_id, s.received_at FROM search_words s
  WHERE s.field = :field AND s.word = u.word{gate}
  ORDER BY s.received_at {dir}, s.message_id {dir} LIMIT :depth) AS t
GROUP BY t.message_id, t.received_at
ORDER BY t.received_at {dir}, t.message_id {dir} LIMIT :limit OFFSET :offset
"""
_COUNT_ROWS = """SELECT count(*) FROM (SELECT 1 FROM search_words s WHERE s.field = :field
  AND s.word = ANY(CAST(:words AS text[])){gate} LIMIT :most) AS x"""
_MOST_OF_ONE = """
SELECT coalesce(max(c), 0) FROM unnest(CAST(:words AS text[])) AS u(word)
CROSS JOIN LATERAL (SELECT count(*) AS c FROM (SELECT 1 FROM search_words s
  WHERE s.field = :field AND s.word = u.word{gate} LIMIT :most) AS x) AS n
"""
_COUNT_DISTINCT = """SELECT count(DISTINCT s.message_id) FROM search_words s
  WHERE s.field = :field AND s.word = ANY(CAST(:words AS text[])){gate}"""


@functools.cache
def _statement(template: str, gated: bool, direction: str = "desc") -> Any:
    gate = " AND (s.origin = :origin OR s.origin_ip = :ip)" if gated else ""
    return text(template.format(gate=gate, dir=direction.upper()))


def _page(ws: WordSet, direction: str, limit: int, offset: int
          ) -> tuple[Any, dict[str, Any]]:
    return (_statement(_PAGE, ws.gateway is not None, direction),
            {**ws.args(), "depth": offset + limit, "limit": limit, "offset": offset})


def page(conn: Connection, ws: WordSet, direction: str, limit: int, offset: int) -> list[int]:
    """The MIDs of a page of *ws*'s messages by received time: per word at most a page's
    depth of its rows (each message of the page is within that depth of one of its
    words), merged."""
    if not ws.words:
        return []
    return [int(m) for (m,) in conn.execute(*_page(ws, direction, limit, offset))]


def _counts(ws: WordSet, cap: int | None) -> list[tuple[str, Any, dict[str, Any]]]:
    """(what, statement, parameters) of the counts of *ws*: one, or the most of one word
    and then the distinct count."""
    gated = ws.gateway is not None
    args = {**ws.args(), "most": (cap or 0) + 1}
    distinct = ("count: distinct", _statement(_COUNT_DISTINCT, gated), args)
    if cap is None:
        return [distinct]
    if ws.unique:
        return [("count", _statement(_COUNT_ROWS, gated), args)]
    return [("count: most of one word", _statement(_MOST_OF_ONE, gated), args), distinct]


def count(conn: Connection, ws: WordSet, cap: int | None) -> int:
    """How many messages hold one of *ws*'s words, counted up to cap + 1 (None: all).

    Where a message may hold two of the words, a word with more than *cap*
    messages settles it; else the rows (at most cap per word) are counted
    distinct.
    """
    if not ws.words:
        return 0
    steps = _counts(ws, cap)
    if cap is None or len(steps) == 1:
        return int(conn.execute(*steps[0][1:]).scalar() or 0)
    if int(conn.execute(*steps[0][1:]).scalar() or 0) > cap:
        return cap + 1
    return min(cap + 1, int(conn.execute(*steps[1][1:]).scalar() or 0))


def statements(ws: WordSet, direction: str, limit: int, offset: int, cap: int
               ) -> list[tuple[str, Any, dict[str, Any]]]:
    """(what, statement, parameters) of each statement `page` and `count` may run for
    *ws* (to print their plans)."""
    return [("page", *_page(ws, direction, limit, offset)), *_counts(ws, cap)]
