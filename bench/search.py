"""Quarantine search at a million messages, on SQLite and on PostgreSQL.

Loads N quarantined-message records (default 1,000,000: realistic senders,
subjects, recipients, attachments and reasons — content filter names, virus
names, outbreak rules — over 30 days, in Policy, Virus, Outbreak and two
custom quarantines, 5 % of them in two) straight into the store's tables,
then runs ten typical operator searches through `QuarantineStore.search`
(the code the CLI and the API use: a page of results *and* the total count),
each R times with varying values, and prints p50/p95 per search and overall.

Then a bulk release of 10,000 messages found by a search, through
`QuarantineService.bulk`: the time until the releases are durably decided
and claimed ("queued": a crash after this point is finished by recovery),
and the time until each one's release entry is written and fsync'd to a real
spool (what `the.cpq.release.host` delivers from).

PostgreSQL is a private server started here (initdb + pg_ctl on a free
port, fsync on), sized for the data (`BENCH_PG_SETTINGS`). `--pg-keep DIR`
leaves its data directory in DIR (with the load time in DIR/bench-load.json);
`--pg-reuse DIR` starts a server on such a directory and skips the load, so
the searches at ten million can be measured again without half an hour of
load; a kept cluster of an older schema is migrated first (the time printed,
then `VACUUM ANALYZE`). The PostgreSQL load fills the search words
(`quarantine.words`) as revision 0007 does, and counts them in the load time.
Bounded: N rows, R repetitions.

Last line: `RESULT search_p95_sqlite <ms> ms ratio=<50 ÷ p95>` (>= 1 meets the target).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pvoq.quarantine import words
from pvoq.quarantine.migrate import current, head_revision
from pvoq.quarantine.roles import ADMIN, Caller
from pvoq.quarantine.schema import FTS_COLUMNS, make_engine
from pvoq.quarantine.search import SearchQuery, TextFilter
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.settings import DAY, RELEASE, QuarantineSettings, merge_settings
from pvoq.quarantine.store import QuarantineStore
from pvoq.spool.store import QUEUED, Entry, Recipient, Spool
from pvoq.testing.pgserver import PostgresServer

NOW = 1_800_000_000.0
SETTINGS = merge_settings([QuarantineSettings("HR", 14 * DAY, RELEASE, False),
                           QuarantineSettings("Legal", 30 * DAY, RELEASE, False)])
QUARANTINES = (["Policy"] * 45 + ["Virus"] * 20 + ["Outbreak"] * 25 + ["HR"] * 6
               + ["Legal"] * 4)
FIRST = ("anna", "ben", "carla", "dmitri", "eva", "farid", "greta", "hiro", "ines", "jon",
         "kemal", "lea", "marco", "nadia", "oscar", "paula", "quentin", "rosa", "sven", "tara",
         "ugo", "vera", "wen", "xavier", "yara", "zoe", "billing", "noreply", "info", "sales",
         "support", "newsletter", "hr", "payroll", "security", "admin")
LAST = ("smith", "garcia", "muller", "rossi", "dubois", "kowalski", "nakamura", "silva",
        "jensen", "novak", "ivanova", "okafor", "chen", "kumar", "haddad", "larsen")
DOMAINS = [f"{w}{i}.example" for i in range(400) for w in ("mail", "corp")] + [
    "gmail.example", "outlook.example", "yahoo.example", "bank-secure.example",
    "paypa1.example", "invoice-center.example", "dhl-tracking.example"]
LOCAL_DOMAINS = ("example.com", "example.net", "sub.example.com", "example.org")
WORDS = ("invoice", "payment", "overdue", "account", "verify", "password", "delivery",
         "parcel", "meeting", "agenda", "report", "quarterly", "salary", "bonus", "contract",
         "urgent", "confidential", "offer", "discount", "winner", "prize", "security",
         "alert", "update", "order", "shipment", "receipt", "statement", "tax", "refund",
         "project", "budget", "review", "schedule", "holiday", "training", "webinar",
         "newsletter", "promotion", "subscription", "renewal", "license", "document",
         "scan", "fax", "voicemail", "reminder", "final", "notice", "claim")
TEMPLATES = ("{w1} {w2} #{n}", "RE: {w1} {w2}", "FW: {w1} for {name}", "Your {w1} {w2} {n}",
             "[External] {w1} {w2} ({n})", "{w1}: action required", "{name}, your {w1}",
             "{w1} {w2} {w3}")
VIRUSES = ("Eicar-Test-Signature", "Win.Trojan.Agent-1234567", "Doc.Dropper.Emotet-9876",
           "Html.Phishing.Bank-4421", "Xls.Downloader.Qakbot-771", "Pdf.Exploit.CVE_2023-1",
           "Js.Trojan.Nemucod-3321", "Win.Ransomware.Locky-5512")
FILTERS = ("confidential_subject", "executable_attachment", "salary_terms", "external_forward",
           "large_attachment", "profanity", "credit_card_numbers", "legal_hold")
ATTACH = ("invoice.pdf", "report.xlsx", "scan_0042.pdf", "document.docx", "setup.exe",
          "photo.jpg", "archive.zip", "statement.pdf", "payload.js", "notes.txt")


def generate(n: int, seed: int = 7) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]],
                                                      list[tuple[Any, ...]],
                                                      list[tuple[Any, ...]], tuple[Any, ...]]]:
    """Rows per message: messages, message_quarantines, recipients, attachments, search_text."""
    rnd = random.Random(seed)
    senders = [f"{rnd.choice(FIRST)}.{rnd.choice(LAST)}{rnd.randrange(100)}@{rnd.choice(DOMAINS)}"
               for _ in range(50_000)]
    users = [f"{rnd.choice(FIRST)}.{rnd.choice(LAST)}@{rnd.choice(LOCAL_DOMAINS)}"
             for _ in range(20_000)]
    span = 30 * DAY
    reason_ids: dict[str, int] = {}
    for mid in range(1, n + 1):
        received = NOW - span + span * (mid / n) + rnd.random()
        sender = rnd.choice(senders)
        name = sender.split(".")[0].title()
        subject = rnd.choice(TEMPLATES).format(w1=rnd.choice(WORDS), w2=rnd.choice(WORDS),
                                               w3=rnd.choice(WORDS), n=rnd.randrange(100000),
                                               name=name)
        rcpts = [rnd.choice(users) for _ in range(1 if rnd.random() < 0.85 else 3)]
        size = int(min(rnd.lognormvariate(9.5, 1.0), 20_000_000))
        qs = [rnd.choice(QUARANTINES)]
        if rnd.random() < 0.05:
            other = rnd.choice(QUARANTINES)
            if other != qs[0]:
                qs.append(other)
        mq = []
        for q in qs:
            if q == "Virus":
                reason = f"a/v verdict:VIRAL {rnd.choice(VIRUSES)}"
            elif q == "Outbreak":
                reason = f"VOF rule:OUTBREAK_{rnd.randrange(1, 3000):07d}"
            else:
                reason = f"content filter:{rnd.choice(FILTERS)}"
            exit_at = received + SETTINGS[q].retention_s
            rid = reason_ids.setdefault(reason, len(reason_ids) + 1)
            mq.append((mid, q, reason, "content_filters", received, exit_at, "held", rid))
        files = []
        if rnd.random() < 0.3:
            name = rnd.choice(ATTACH)
            files = [(mid, 0, name, rnd.randrange(1000, 5_000_000), name.lower()[::-1])]
        meta = {"origin": {"hostname": f"gw{mid % 4 + 1}.example.com"}}
        gw = mid % 4 + 1
        yield ((mid, f"t-{mid}", f"gw{gw}.example.com", f"SN{gw}", mid, f"10.0.0.{gw}", sender,
                json.dumps([{"rid": i, "address": a} for i, a in enumerate(rcpts)]), subject,
                received, size, "", "held", json.dumps(meta), sender.lower()[::-1]),
               mq, [(mid, i, a) for i, a in enumerate(rcpts)], files,
               (mid, subject, sender, " ".join(rcpts), " ".join(r[2] for r in mq),
                " ".join(f[2] for f in files)))


# The maintained counters, set once after the bulk load.
COUNTS = """
DELETE FROM held_counts;
INSERT INTO held_counts (quarantine, n) SELECT quarantine, count(*) FROM message_quarantines
    WHERE state = 'held' GROUP BY quarantine;
INSERT INTO held_counts (quarantine, n) SELECT '*', count(*) FROM messages WHERE state = 'held';
INSERT INTO held_counts (quarantine, n) SELECT '*bytes', sum(size) FROM messages
    WHERE state = 'held';
"""
MSG_COLS = ("id, transfer_id, origin_host, origin_serial, origin_mid, origin_ip, sender, "
            "recipients, subject, received_at, size, body_path, state, meta, sender_rev")
MQ_COLS = ("message_id, quarantine, reason, stage, received_at, scheduled_exit, state, "
           "reason_id")
REASONS = """
INSERT INTO reasons (id, text) SELECT reason_id, min(reason) FROM message_quarantines
    GROUP BY reason_id;
"""

# The loaded tables' indexes that back no constraint (primary keys stay).
SECONDARY_INDEXES = """
SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
    WHERE t.relname IN ('messages', 'message_quarantines', 'message_recipients', 'attachments',
                        'search_words', 'search_vocabulary')
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)
    ORDER BY i.relname
"""


def load_sqlite(path: Path, n: int, batch: int = 20_000) -> float:
    store = QuarantineStore(f"sqlite:///{path}", path.parent / "bodies", settings=SETTINGS)
    store.sync_quarantines(SETTINGS)
    store.close()
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    rows: list[list[Any]] = [[], [], [], [], []]

    def flush() -> None:
        conn.executemany(f"INSERT INTO messages ({MSG_COLS}) VALUES ({','.join('?' * 15)})",
                         rows[0])
        conn.executemany(f"INSERT INTO message_quarantines ({MQ_COLS}) VALUES "
                         "(?,?,?,?,?,?,?,?)", rows[1])
        conn.executemany("INSERT INTO message_recipients VALUES (?,?,?)", rows[2])
        conn.executemany("INSERT INTO attachments (message_id, n, name, size, name_rev) "
                         "VALUES (?,?,?,?,?)", rows[3])
        for i, name in enumerate(("subject", "sender", "recipients", "reasons",
                                  "attachments"), start=1):
            if name not in FTS_COLUMNS:  # searched in their own tables (revision 0009)
                continue
            conn.executemany(f"INSERT INTO fts_{name} (rowid, {name}) VALUES (?, ?)",
                             [(r[0], r[i]) for r in rows[4] if r[i]])
        conn.commit()
        for r in rows:
            r.clear()

    for m, mq, rc, at, fts in generate(n):
        rows[0].append(m)
        rows[1].extend(mq)
        rows[2].extend(rc)
        rows[3].extend(at)
        rows[4].append(fts)
        if len(rows[0]) >= batch:
            flush()
    flush()
    conn.executescript(COUNTS + REASONS)
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    return time.perf_counter() - start


def load_postgres(url: str, n: int, batch: int = 50_000) -> float:
    import psycopg

    store = QuarantineStore(url, Path(tempfile.gettempdir()) / "pvoq-bench-unused",
                            settings=SETTINGS, bodies="database")
    store.sync_quarantines(SETTINGS)
    store.close()
    start = time.perf_counter()
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        # A bulk load's usual order: the secondary indexes are dropped here and built
        # once after the rows are in (counted in the load time), instead of growing
        # ten million entries at a time in random order.
        indexes = conn.execute(SECONDARY_INDEXES).fetchall()
        for name, _definition in indexes:
            conn.execute(f'DROP INDEX "{name}"')
    with psycopg.connect(dsn) as conn:
        rows: list[list[Any]] = [[], [], [], []]

        def flush() -> None:
            with conn.cursor() as cur:
                for table, cols, data in (("messages", MSG_COLS, rows[0]),
                                          ("message_quarantines", MQ_COLS, rows[1]),
                                          ("message_recipients", "message_id, rid, address",
                                           rows[2]),
                                          ("attachments", "message_id, n, name, size, name_rev",
                                           rows[3])):
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                        for row in data:
                            copy.write_row(row)
            conn.commit()
            for r in rows:
                r.clear()

        for m, mq, rc, at, _fts in generate(n):
            rows[0].append(m)
            rows[1].extend(mq)
            rows[2].extend(rc)
            rows[3].extend(at)
            if len(rows[0]) >= batch:
                flush()
        flush()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in words.FILL_ALL:  # the search words, as revision 0007 fills them
            conn.execute(statement)
        for _name, definition in indexes:
            conn.execute(definition)
        for statement in (COUNTS + REASONS
                          + "SELECT setval('reasons_id_seq', (SELECT max(id) FROM reasons));"
                          ).strip().split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - start


# The bench server's settings, for the data it holds on this machine (24 GB of RAM,
# 2 CPUs, SSD): what a ten-million-message deployment should set (docs/operations.md).
# wal_level=minimal (no replica) lets the bulk load's index builds skip the WAL.
BENCH_PG_SETTINGS = {
    "shared_buffers": "4GB",
    "effective_cache_size": "12GB",
    "work_mem": "64MB",
    "maintenance_work_mem": "2GB",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_parallel_maintenance_workers": "2",
    "jit": "off",
}


class BenchPostgres(PostgresServer):
    """The bench's server: sized for the data, in a directory that can be kept (`keep`)
    and started again."""

    def __init__(self, root: Path | None = None, *, keep: bool = False) -> None:
        super().__init__(fsync=True, root=root, keep=keep, settings=BENCH_PG_SETTINGS,
                         max_connections=20, start_timeout_s=600)


def searches(rnd: random.Random) -> list[tuple[str, Callable[[], SearchQuery]]]:
    """Ten typical operator searches; each call draws new values."""
    senders = [f"{f}.{last}" for f in FIRST[:20] for last in LAST]
    return [
        ("all quarantines, newest first, 20", lambda: SearchQuery(limit=20)),
        ("one quarantine, newest first, 50",
         lambda: SearchQuery(quarantines=(rnd.choice(["Policy", "Virus", "Outbreak"]),),
                             limit=50)),
        ("sender contains name", lambda: SearchQuery(
            sender=TextFilter("contains", rnd.choice(senders)), limit=20)),
        ("sender ends with domain", lambda: SearchQuery(
            sender=TextFilter("ends_with", "@" + rnd.choice(DOMAINS[-7:])), limit=20)),
        ("subject contains word", lambda: SearchQuery(
            subject=TextFilter("contains", rnd.choice(WORDS)), limit=20)),
        ("recipient is address", lambda: SearchQuery(
            recipient=TextFilter("is", f"{rnd.choice(FIRST)}.{rnd.choice(LAST)}@example.com"),
            limit=20)),
        ("reason contains virus name", lambda: SearchQuery(
            quarantines=("Virus",), reason=TextFilter("contains", rnd.choice(VIRUSES)[:12]),
            limit=20)),
        ("last 24 h, sorted by size", lambda: SearchQuery(
            received_from=NOW - DAY * rnd.uniform(0.5, 1.5), order_by="size", limit=20)),
        ("attachment ends with .exe", lambda: SearchQuery(
            attachment_name=TextFilter("ends_with", rnd.choice([".exe", ".js", ".zip"])),
            limit=20)),
        ("gateway + sender contains name", lambda: SearchQuery(
            gateway=f"gw{rnd.randrange(1, 5)}.example.com",
            sender=TextFilter("contains", rnd.choice(senders)), limit=20)),
    ]


def server_cpu(datadir: Path | None) -> float:
    """CPU seconds (user + system) used so far by the PostgreSQL server in *datadir*
    (the postmaster and its children); 0 without one."""
    if datadir is None:
        return 0.0
    postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])          # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


Result = tuple[str, float, float, str, float]


def measure(store: QuarantineStore, reps: int, datadir: Path | None = None
            ) -> tuple[list[Result], list[float]]:
    """p50/p95 of each search as the API runs it: a page and the total counted up to
    `TOTAL_CAP` ("more than 10,000" above it); and the CPU each took on average (this
    process plus the PostgreSQL server in *datadir*): under load the wall time
    measures the machine's share, the CPU time the work."""
    rnd = random.Random(11)
    results = []
    everything: list[float] = []
    for name, make in searches(rnd):
        store.search_counted(make())  # warm the cache for this shape
        times = []
        shown = ""
        cpu0 = time.process_time() + server_cpu(datadir)
        for _ in range(reps):
            q = make()
            t0 = time.perf_counter()
            _, total, exact = store.search_counted(q)
            times.append((time.perf_counter() - t0) * 1000)
            shown = f"{total:,}" if exact else f">{total:,}"
        cpu = (time.process_time() + server_cpu(datadir) - cpu0) * 1000 / reps
        times.sort()
        p50 = statistics.median(times)
        p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
        results.append((name, p50, p95, shown, cpu))
        everything += times
    everything.sort()
    return results, everything


def explain(store: QuarantineStore) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of each search's count and page statements (PostgreSQL)."""
    from sqlalchemy import select, text

    from pvoq.quarantine.schema import held_counts
    from pvoq.quarantine.search import (
        TOTAL_CAP,
        compile_counted_page,
        compile_query,
        counted_in_one,
        counter_for,
        sole_words,
        walk_above,
    )

    rnd = random.Random(11)
    with store.engine.connect() as conn:
        for name, make in searches(rnd):
            q = make()
            found = store._words(conn, q)   # what QuarantineStore.search_counted runs:
            sole = sole_words(q, found)
            if sole is not None:
                for what, stmt, args in words.statements(sole, q.order_dir, q.limit, q.offset,
                                                         TOTAL_CAP):
                    plan = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + stmt.text),
                                        args).fetchall()
                    print(f"\n=== {name}: {what} (search words: {len(sole.words)} of "
                          f"field {sole.field})\n{stmt.text}")
                    print("\n".join(row[0] for row in plan))
                continue
            counter = counter_for(q)
            one = counter is None and counted_in_one(q, store.dialect, found)
            if counter is not None:
                count = select(held_counts.c.n).where(held_counts.c.quarantine == counter)
            elif one:
                count = compile_counted_page(q, store.dialect, TOTAL_CAP, found)
            else:
                count = compile_query(q, store.dialect, cap=TOTAL_CAP, words=found)[1]
            total = int(conn.execute(count).scalars().first() or 0)
            statements = [("count and page" if one else "count", count)]
            if not one or total > TOTAL_CAP:
                held = int(conn.execute(select(held_counts.c.n).where(
                    held_counts.c.quarantine == "*")).scalar() or 0)
                walk_from = walk_above(q, held) if total <= TOTAL_CAP else TOTAL_CAP - 1
                statements.append(("page", compile_query(q, store.dialect,
                                                         min(total, TOTAL_CAP),
                                                         walk_from=walk_from, words=found)[0]))
            for what, stmt in statements:
                sql = str(stmt.compile(store.engine, compile_kwargs={"literal_binds": True}))
                plan = conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql)).fetchall()
                print(f"\n=== {name}: {what}\n{sql}")
                print("\n".join(row[0] for row in plan))


class SpoolSettler:
    """What the manager does for a release: a spool entry written and fsync'd, then finish."""

    def __init__(self, store: QuarantineStore, spool: Spool) -> None:
        self.store = store
        self.spool = spool
        self.done = 0

    def settle(self, mid: int, state: str, how: str = "manual",
               names: tuple[str, ...] | None = None) -> None:
        record = self.store.get(mid)
        assert record is not None
        if state == "released":
            entry = Entry(mid=mid, sender=record["sender"],
                          recipients=[Recipient(r["rid"], r["address"],
                                                host="the.cpq.release.host")
                                      for r in record["recipients"]],
                          received=record["received_at"], size=record["size"], state=QUEUED,
                          meta={"gateway": record["origin_host"]})
            self.spool.put(entry, b"Subject: x\r\n\r\nbody\r\n")
        self.store.finish(mid, state)
        self.done += 1

    def settle_many(self, settled: list[tuple[int, str, tuple[str, ...]]], how: str) -> None:
        self.pending = list(settled)

    def drain(self) -> None:
        for mid, state, names in self.pending:
            self.settle(mid, state, "manual", names)

    def send_copy(self, mid: int, address: str) -> int:
        raise NotImplementedError


def bulk_release(store: QuarantineStore, workdir: Path, count: int) -> tuple[float, float, int]:
    settler = SpoolSettler(store, Spool(workdir / "spool"))
    settler.pending = []
    service = QuarantineService(store, settler, lambda line: None)
    caller = Caller("bench", "bench", ADMIN)
    query = SearchQuery(quarantines=("Outbreak",), received_to=NOW - 20 * DAY)
    mids = store.search_ids(query)[:count]
    t0 = time.perf_counter()
    results = service.act_many(caller, "release", mids)
    queued = time.perf_counter() - t0
    settler.drain()
    spooled = time.perf_counter() - t0
    return queued, spooled, sum(1 for r in results if r.ok)


def report(backend: str, load_s: float, n: int, results: list[Result],
           everything: list[float]) -> float:
    print(f"\n{backend}: {n:,} messages loaded in {load_s:.0f} s; load average now "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(f"  {'search':<36}{'p50 ms':>9}{'p95 ms':>9}{'total':>11}{'cpu ms':>9}")
    for name, p50, p95, total, cpu in results:
        print(f"  {name:<36}{p50:>9.1f}{p95:>9.1f}{total:>11}{cpu:>9.1f}")
    p95_all = everything[int(0.95 * len(everything)) - 1]
    print(f"  {'all ten searches':<36}{statistics.median(everything):>9.1f}{p95_all:>9.1f}")
    return p95_all


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--bulk", type=int, default=10_000)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-keep", type=Path, metavar="DIR",
                    help="build the PostgreSQL cluster in DIR and leave it there")
    ap.add_argument("--pg-reuse", type=Path, metavar="DIR",
                    help="start a server on a cluster kept with --pg-keep; skip the load")
    ap.add_argument("--explain", action="store_true",
                    help="print EXPLAIN (ANALYZE, BUFFERS) of each PostgreSQL search first")
    args = ap.parse_args()
    backends = args.backends.split(",")
    work = Path(tempfile.mkdtemp(prefix="pvoq-bench-search-"))
    try:
        return run(args, backends, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, backends: list[str], work: Path) -> int:
    p95: dict[str, float] = {}
    print(f"{args.rows:,} quarantined messages, {args.reps} runs of each of ten searches "
          "(a page and the total count)")
    if "sqlite" in backends:
        db = work / "sqlite" / "quarantine.db"
        db.parent.mkdir(parents=True)
        load_s = load_sqlite(db, args.rows)
        store = QuarantineStore(f"sqlite:///{db}", db.parent / "bodies", settings=SETTINGS)
        results, everything = measure(store, args.reps)
        p95["sqlite"] = report("SQLite (WAL, FTS5 trigram)", load_s, args.rows, results,
                               everything)
        queued, spooled, n = bulk_release(store, db.parent, args.bulk)
        print(f"  bulk release of {n:,} messages: queued (decided, claimed, durable) in "
              f"{queued:.1f} s; all spooled (entry fsync'd) in {spooled:.1f} s")
        store.close()
    if "postgresql" in backends:
        kept = args.pg_reuse or args.pg_keep
        server = BenchPostgres(kept, keep=kept is not None).start()
        try:
            (work / "pg").mkdir()
            if args.pg_reuse:
                made = json.loads((args.pg_reuse / "bench-load.json").read_text())
                url, load_s = server.url("bench"), made["load_s"]
                if made["rows"] != args.rows:
                    raise SystemExit(f"--pg-reuse {args.pg_reuse}: holds {made['rows']:,} "
                                     f"rows, not --rows {args.rows:,}")
                print(f"reusing the cluster in {args.pg_reuse} (loaded {made['when']})")
            else:
                url = server.create_database("bench")
                load_s = load_postgres(url, args.rows)
                if args.pg_keep:
                    (args.pg_keep / "bench-load.json").write_text(json.dumps(
                        {"rows": args.rows, "load_s": load_s,
                         "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                         "loadavg": os.getloadavg()}))
            engine = make_engine(url)
            before = current(engine)
            engine.dispose()
            opened = time.perf_counter()
            store = QuarantineStore(url, work / "pg" / "bodies", settings=SETTINGS)
            if before != head_revision():  # a kept cluster of an older schema: migrated
                migrated = time.perf_counter() - opened
                print(f"schema upgraded from revision {before} to {head_revision()} in "
                      f"{migrated:.0f} s")
                vacuumed = time.perf_counter()
                with store.engine.connect().execution_options(
                        isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql("VACUUM ANALYZE")
                print(f"VACUUM ANALYZE after it: {time.perf_counter() - vacuumed:.0f} s")
            if args.explain:
                explain(store)
            results, everything = measure(store, args.reps, server.datadir)
            p95["postgresql"] = report("PostgreSQL 15 (pg_trgm)", load_s, args.rows, results,
                                       everything)
            if args.bulk:
                queued, spooled, n = bulk_release(store, work / "pg", args.bulk)
                print(f"  bulk release of {n:,} messages: queued (decided, claimed, durable) "
                      f"in {queued:.1f} s; all spooled (entry fsync'd) in {spooled:.1f} s")
            store.close()
        finally:
            server.stop()
    if "postgresql" in p95:
        print(f"RESULT search_p95_postgresql {p95['postgresql']:.1f} ms "
              f"ratio={100 / p95['postgresql']:.2f}")
    if "sqlite" in p95:
        print(f"RESULT search_p95_sqlite {p95['sqlite']:.1f} ms ratio={50 / p95['sqlite']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
