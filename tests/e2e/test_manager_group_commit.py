"""Group commit on the manager survives SIGKILL: every acknowledged transfer is stored once.

A real manager process (SQLite, or a real PostgreSQL server) receives CPQ
quarantine transfers from pvoq's own CPQ sender over four mutual-TLS
connections, as a gateway ships them (up to 16 transfers in flight on each,
pipelined by BDAT), while the test SIGKILLs the manager
at random moments and starts it again. The sender retries every transfer
(same transfer id) until it gets a 250, as a gateway does. At the end every
transfer that got a 250 is held exactly once, no transfer is held twice, and
on SQLite the bodies directory holds exactly the bodies of the held
messages kept as files (one transfer in ten is large enough to be a file, the
others' bodies are in the database, committed with their rows): the start-up
sweep removed what a batch cut by a kill left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import ssl
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pvoq.config.loader import load_config
from pvoq.cpq import tls
from pvoq.cpq.client import CpqConnection
from pvoq.cpq.metadata import encode_chunks
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.client import TRANSACTIONS_IN_FLIGHT as IN_FLIGHT
from pvoq.smtp.client import DeliveryError, Reply, TlsPolicy
from pvoq.testing.localdeploy import GATEWAY, Deployment, quarantine_metadata
from pvoq.testing.pgserver import PostgresServer

TRANSFERS = 4000  # enough that the kills come while they flow, 16 in flight a connection
CONNECTIONS = 4
KILLS = 3
SEED = 20261130
DEADLINE_S = 300.0


def large(i: int) -> bool:
    """One transfer in ten is over the manager's inline body size: its body is a file."""
    return i % 10 == 0


def wire(i: int) -> bytes:
    head = (f"From: alice@sender.example\r\nTo: bob@example.com\r\nSubject: commit-{i:04d}\r\n"
            f"Message-ID: <commit-{i:04d}@test>\r\n\r\n").encode()
    return head + b"quarterly figures for the board\r\n" * (2100 if large(i) else 60)


def meta(i: int, size: int) -> dict[str, object]:
    return quarantine_metadata(f"commit-transfer-{i:04d}", i, size,
                               reason="content filter:commit", received=1700000000.0)


class Sender(threading.Thread):
    """Ships every transfer until it gets a 250, over reused connections."""

    def __init__(self, dep: Deployment, root: Path) -> None:
        super().__init__(daemon=True)
        self.dep = dep
        self.root = root
        self.acknowledged: Counter[int] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self.main())
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    async def main(self) -> None:
        cfg = load_config(self.dep.gateway_config)
        context = tls.client_context(cfg.cpq_certificate, ciphers=cfg.ssl.outbound_ciphers)
        log = MailLog(self.root / "sender-logs", appliance="sender", serial="SENDER")
        ids = IdAllocator(self.root / "sender-ids.json")
        deadline = time.monotonic() + DEADLINE_S
        try:
            await asyncio.gather(*(self.worker(list(range(k, TRANSFERS, CONNECTIONS)), context,
                                               log, ids, deadline)
                                   for k in range(CONNECTIONS)))
        finally:
            log.close()

    async def worker(self, todo: list[int], context: ssl.SSLContext, log: MailLog,
                     ids: IdAllocator, deadline: float) -> None:
        """As a gateway's connection does: up to `in_flight` transfers under way at once
        (BDAT, pipelined), each retried until it gets its own 250."""
        conn: CpqConnection | None = None
        while todo and time.monotonic() < deadline:
            try:
                if conn is None:
                    conn = CpqConnection(expect_role="manager", maillog=log, ids=ids,
                                         local_hostname=GATEWAY, label="the.cpq.host",
                                         tls=TlsPolicy(context, required=True),
                                         timeout_s=20)
                    await conn.open("127.0.0.1", self.dep.ports["manager_cpq"])
                    assert conn.in_flight == IN_FLIGHT
                batch = todo[:conn.in_flight]
                outcomes = await asyncio.gather(*(self.send(conn, i) for i in batch),
                                                return_exceptions=True)
                broken = False
                for i, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, TimeoutError | DeliveryError | OSError):
                        broken = True
                    elif isinstance(outcome, BaseException):
                        raise outcome
                    elif outcome.ok:
                        self.acknowledged[i] += 1
                        todo.remove(i)
                    elif outcome.code >= 500:
                        raise AssertionError(f"transfer {i} refused for good: {outcome}")
                    else:
                        broken = True
                if not broken:
                    continue
            except (TimeoutError, DeliveryError, OSError):
                pass
            if conn is not None:  # refused, cut or down: a new connection, the same transfers
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), 5)
                conn = None
            await asyncio.sleep(0.1)
        if conn is not None:
            await conn.close()
        if todo:
            raise AssertionError(f"{len(todo)} transfers never acknowledged before the deadline")

    @staticmethod
    async def send(conn: CpqConnection, i: int) -> Reply:
        body = wire(i)
        return (await conn.send(
            mid=i, sender="alice@sender.example", recipients=[(0, "bob@example.com")],
            body=body, extra=[f"XCPQ META {c}" for c in encode_chunks(meta(i, len(body)))]))[0]


def held(dep: Deployment) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for _ in range(100):
        page = dep.admin(dep.manager_config, "quarantine.list",
                         {"limit": 500, "offset": len(found)})["data"]["messages"]
        if not page:
            break
        found += page
    return found


def store_settings(dep: Deployment, *, request: pytest.FixtureRequest | None = None,
                   name: str = "", inline_body_max_kb: int | None = None
                   ) -> PostgresServer | None:
    """The manager's `<quarantine_store>`: with *request*, a new database *name* of the
    session's PostgreSQL server (returned); *inline_body_max_kb* if given."""
    postgres: PostgresServer | None = None
    lines = []
    if request is not None:
        postgres = request.getfixturevalue("postgres")
        lines.append(f"<database_url>{postgres.create_database(name)}</database_url>")
    if inline_body_max_kb is not None:
        lines.append(f"<inline_body_max_kb>{inline_body_max_kb}</inline_body_max_kb>")
    config = dep.manager_config
    config.write_text(config.read_text().replace(
        "</config>", f"<quarantine_store>{''.join(lines)}</quarantine_store></config>"))
    return postgres


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_while_transfers_flow_loses_and_duplicates_nothing(
        deployment: Deployment, tmp_path: Path, backend: str,
        request: pytest.FixtureRequest) -> None:
    dep = deployment
    if backend == "postgresql":
        store_settings(dep, request=request, name="group_commit_e2e")
    bodies = load_config(dep.manager_config).data_dir / "quarantine" / "bodies"
    rng = random.Random(SEED)
    dep.start_manager()
    sender = Sender(dep, tmp_path)
    sender.start()
    kills = 0
    deadline = time.monotonic() + DEADLINE_S
    while kills < KILLS and sender.is_alive() and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.3, 1.2))
        dep.stop("manager", sig=signal.SIGKILL)
        kills += 1
        dep.start_manager()
    sender.join(DEADLINE_S)
    assert not sender.is_alive(), "the sender did not finish in time"
    assert sender.error is None, sender.error
    assert kills == KILLS, "the transfers were done before the kills: nothing was shown"
    assert set(sender.acknowledged) == set(range(TRANSFERS))

    messages = held(dep)
    subjects = Counter(str(m["subject"]) for m in messages)
    assert set(subjects) == {f"commit-{i:04d}" for i in range(TRANSFERS)}
    assert [s for s, n in subjects.items() if n > 1] == []
    names = {p.name for p in bodies.iterdir()}
    kept = {f"{m['id']}.eml" for m in messages if large(int(str(m["subject"])[-4:]))}
    assert len(kept) == TRANSFERS // 10 and kept <= names
    if backend == "sqlite":
        # What a kill cut mid-batch was swept at the next start: one body per held message.
        assert names == kept
    else:
        # Managers sharing PostgreSQL may share the directory: a young body without a row
        # may be another manager's batch in progress, and is swept only once an hour old.
        assert all(p.endswith(".eml") and p[:-4].isdigit() for p in names - kept)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_between_the_bodies_sync_and_the_commit(
        deployment: Deployment, tmp_path: Path, backend: str,
        request: pytest.FixtureRequest) -> None:
    """The crash point between a batch's bodies made durable (staged as the transfers
    came in) and its commit: the test holds the messages table's write lock (SQLite's
    database lock; on PostgreSQL a lock on the table that INSERTs wait for), so the
    batch waits with its bodies synced and no rows, and SIGKILLs the manager there.
    Nothing acknowledged is lost, nothing is stored twice, and the bodies without rows
    are swept at start (on PostgreSQL once an hour old: another manager's may be young)."""
    dep = deployment
    # Every body a file, staged as it comes in (small ones would wait for their batch).
    postgres = store_settings(dep, request=request if backend == "postgresql" else None,
                              name="group_commit_staged", inline_body_max_kb=0)
    data = load_config(dep.manager_config).data_dir
    bodies = data / "quarantine" / "bodies"
    dep.start_manager()
    sender = Sender(dep, tmp_path)
    sender.start()
    deadline = time.monotonic() + DEADLINE_S
    while sum(sender.acknowledged.values()) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    lock = TableLock(data, postgres)
    try:
        waiting: list[str] = []
        for _ in range(200):  # bounded: 10 s
            stored = {f"{m}.eml" for m in lock.column("id")}
            waiting = sorted({p.name for p in bodies.iterdir()} - stored)
            if waiting:
                break
            time.sleep(0.05)
        assert waiting, "no batch was caught between its bodies' sync and its commit"
        # Only committed transfers were answered: none of the batch waiting for the lock
        # (the replies to a batch committed just before the lock may still be arriving).
        time.sleep(0.5)
        committed = set(lock.column("subject"))
        answered = {f"commit-{i:04d}" for i in list(sender.acknowledged)}
        assert answered <= committed, sorted(answered - committed)
        dep.stop("manager", sig=signal.SIGKILL)
    finally:
        lock.release()
    dep.start_manager()
    sender.join(DEADLINE_S)
    assert not sender.is_alive(), "the sender did not finish in time"
    assert sender.error is None, sender.error
    assert set(sender.acknowledged) == set(range(TRANSFERS))
    messages = held(dep)
    subjects = Counter(str(m["subject"]) for m in messages)
    assert set(subjects) == {f"commit-{i:04d}" for i in range(TRANSFERS)}
    assert [s for s, n in subjects.items() if n > 1] == []
    names = {p.name for p in bodies.iterdir()}
    kept = {f"{m['id']}.eml" for m in messages}
    if postgres is None:
        assert names == kept
    else:
        assert kept <= names and set(waiting) <= names - kept  # young: kept for an hour


class TableLock:
    """The lock a manager's batch INSERTs wait for, held by the test, and its reads."""

    def __init__(self, data: Path, postgres: PostgresServer | None) -> None:
        if postgres is None:
            self.conn: Any = sqlite3.connect(data / "quarantine.db", timeout=30,
                                             isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            import psycopg

            self.conn = psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=pvoq "
                                        "dbname=group_commit_staged")
            self.conn.execute("LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE")

    def column(self, name: str) -> list[Any]:
        return [row[0] for row in self.conn.execute(f"SELECT {name} FROM messages")]

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()
