"""The console's search and message pages against the JSON API, at a million messages.

Loads N quarantined-message records (default 1,000,000) into SQLite with
`bench/search.py`'s loader, writes a realistic body (text, HTML with remote
images and a script, an attachment) for a sample of them, and serves the
manager's console (`web.console.app.build_app`, the REST API under the same
server, as the manager serves it) with uvicorn on a loopback port. Then, in
the same run and interleaved request by request:

- the ten typical searches of `bench/search.py`, each R times with varying
  values, as the *Quarantine Search* page (`GET /quarantine/search?...`) and
  as the same query through the API (`GET /api/v2.0/quarantine/messages?...`);
- M messages as the *Message* page (`GET /quarantine/messages/<mid>`: envelope,
  headers, history, sanitized preview, attachments) and through the API
  (`GET /api/v2.0/quarantine/messages/details?mid=`).

The client is httpx over real HTTP with keep-alive, logged in through the
login form (pages) or with a bearer token (API). Bounded: N rows, R
repetitions, M messages.

Last line: `RESULT web_p95 <page p95> ms ratio=<API p95 x 1.5 / page p95>` over
every page and API request (>= 1 meets the target: pages within 1.5x the API).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from search import NOW, SETTINGS, load_sqlite, searches

from pvoq.config.model import ApiToken
from pvoq.maillog import MailLog
from pvoq.quarantine.search import SearchQuery
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.store import QuarantineStore
from pvoq.users import UserStore
from pvoq.web.api import create_app
from pvoq.web.console.app import build_app
from pvoq.web.console.context import ConsoleContext
from pvoq.web.params import params_of
from pvoq.web.server import ApiServer

USER, PASSWORD, TOKEN = "bench", "bench password 1", "bench-token"


class NoSettler:
    """The benchmark only reads: nothing is ever settled."""

    def settle(self, mid: int, state: str, how: str = "manual",
               names: tuple[str, ...] | None = None) -> None:
        raise AssertionError("the benchmark does not act")

    def settle_many(self, settled: list[tuple[int, str, tuple[str, ...]]], how: str) -> None:
        raise AssertionError("the benchmark does not act")

    def send_copy(self, mid: int, address: str) -> int:
        raise AssertionError("the benchmark does not act")

    def allocate_mid(self) -> int:
        raise AssertionError("the benchmark does not act")


def body(mid: int, rnd: random.Random) -> bytes:
    """A typical quarantined message: text and HTML alternatives, an attachment."""
    msg = EmailMessage()
    msg["From"] = f"sender{mid}@mail{mid % 400}.example"
    msg["To"] = "bob@example.com"
    msg["Subject"] = f"Invoice {mid} overdue"
    msg["Message-ID"] = f"<{mid}.bench@mail.example>"
    for i in range(12):
        msg["Received"] = f"from relay{i}.example ([192.0.2.{i}]) by mx.example; {i}"
    words = " ".join(rnd.choice(("invoice", "payment", "account", "verify", "urgent"))
                     for _ in range(400))
    msg.set_content(words)
    msg.add_alternative(
        "<html><body><h1>Invoice</h1>" + "".join(f"<p>{words[:200]}</p>" for _ in range(10))
        + '<img src="https://tracker.example/p.gif"><script>alert(1)</script>'
        + '<a href="https://pay.example/x">pay</a></body></html>', subtype="html")
    msg.add_attachment(b"%PDF-1.4 " * 2000, maintype="application", subtype="pdf",
                       filename="invoice.pdf")
    return bytes(msg)


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(round(0.95 * len(ordered))) - 1)]


def serve(app: Any) -> tuple[ApiServer, threading.Thread]:
    server = ApiServer(app, "127.0.0.1", 0)
    thread = threading.Thread(target=asyncio.run,
                              args=(server.server.serve(sockets=[server.socket]),), daemon=True)
    thread.start()
    return server, thread


def log_in(client: httpx.Client) -> None:
    page = client.get("/login").text
    marker = 'name="csrf_token" value="'
    start = page.index(marker) + len(marker)
    csrf = page[start:page.index('"', start)]
    reply = client.post("/login", data={"username": USER, "password": PASSWORD, "next": "/",
                                        "csrf_token": csrf}, follow_redirects=True)
    if reply.status_code != 200 or "current-user" not in reply.text:
        raise SystemExit(f"cannot log in to the console: {reply.status_code}")


def timed(client: httpx.Client, url: str) -> float:
    t0 = time.perf_counter()
    reply = client.get(url)
    elapsed = (time.perf_counter() - t0) * 1000
    if reply.status_code != 200:
        raise SystemExit(f"GET {url}: {reply.status_code} {reply.text[:300]}")
    return elapsed


def query_string(q: SearchQuery) -> str:
    return str(httpx.QueryParams({**params_of(q), "limit": str(q.limit)}))


def measure(base: str, reps: int, mids: list[int]) -> dict[str, dict[str, list[float]]]:
    """Per search (and "message"): the page's and the API's times, interleaved."""
    times: dict[str, dict[str, list[float]]] = {}
    rnd = random.Random(11)
    with httpx.Client(base_url=base, timeout=120) as page, \
            httpx.Client(base_url=base, timeout=120,
                         headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        log_in(page)
        for name, make in searches(rnd):
            q = query_string(make())
            timed(page, f"/quarantine/search?{q}")   # warm the cache for this shape
            timed(api, f"/api/v2.0/quarantine/messages?{q}")
            entry = times.setdefault(name, {"page": [], "api": []})
            for _ in range(reps):
                q = query_string(make())
                entry["page"].append(timed(page, f"/quarantine/search?{q}"))
                entry["api"].append(timed(api, f"/api/v2.0/quarantine/messages?{q}"))
        entry = times.setdefault("message (page vs details)", {"page": [], "api": []})
        frames: list[float] = []
        for mid in mids:
            entry["page"].append(timed(page, f"/quarantine/messages/{mid}"))
            entry["api"].append(timed(api, f"/api/v2.0/quarantine/messages/details?mid={mid}"))
            frames.append(timed(page, f"/quarantine/messages/{mid}/preview"))
        times["(the message's preview frame)"] = {"page": frames, "api": []}
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--messages", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pvoq-bench-web-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    db = work / "sqlite" / "quarantine.db"
    db.parent.mkdir(parents=True)
    load_s = load_sqlite(db, args.rows)
    print(f"{args.rows:,} quarantined messages loaded into SQLite in {load_s:.0f} s")
    store = QuarantineStore(f"sqlite:///{db}", db.parent / "bodies", settings=SETTINGS)
    rnd = random.Random(5)
    mids = rnd.sample(range(1, args.rows + 1), min(args.messages, args.rows))
    store.bodies.mkdir(parents=True, exist_ok=True)
    for mid in mids:
        (store.bodies / f"{mid}.eml").write_bytes(body(mid, rnd))
    service = QuarantineService(store, NoSettler(), lambda line: None, clock=lambda: NOW)
    users = UserStore(work / "users.json")
    users.add(USER, PASSWORD, "admin")
    ctx = ConsoleContext(role="manager", hostname="manager.bench.example",
                         config=lambda: None,  # type: ignore[arg-type,return-value]
                         maillog=MailLog(work / "logs", appliance="bench", serial="BENCH"),
                         users=users, service=service,
                         api=create_app(service, (ApiToken(TOKEN, USER, "admin"),)),
                         https=False)
    server, thread = serve(build_app(ctx))
    try:
        times = measure(f"http://127.0.0.1:{server.port}", args.reps, mids)
    finally:
        server.server.should_exit = True
        thread.join(timeout=30)
        server.socket.close()
        store.close()
    print(f"{args.reps} runs of each search, {len(mids)} messages; milliseconds")
    print(f"  {'':40} {'API p50':>8} {'API p95':>8} {'page p50':>9} {'page p95':>9}")
    pages: list[float] = []
    apis: list[float] = []
    for name, entry in times.items():
        a, p = entry["api"], entry["page"]
        api_cols = (f"{statistics.median(a):8.1f} {p95(a):8.1f}" if a else f"{'':8} {'':8}")
        print(f"  {name:40} {api_cols} {statistics.median(p):9.1f} {p95(p):9.1f}")
        if a:
            pages += p
            apis += a
    page95, api95 = p95(pages), p95(apis)
    print(f"  {'all searches and messages':40} {statistics.median(apis):8.1f} {api95:8.1f} "
          f"{statistics.median(pages):9.1f} {page95:9.1f}")
    print(f"RESULT web_p95 {page95:.1f} ms ratio={api95 * 1.5 / page95:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
