"""Message tracking at a million indexed mail_logs lines.

Generates realistic AsyncOS mail_logs lines, as a gateway and its manager
write them, for as many messages as it takes to reach N lines (default
1,000,000; about 70,000 messages): connections carrying several messages,
senders, recipients, subjects, Message-IDs, every scan stage's verdict,
deliveries downstream with their replies; 10 % caught (Policy, Virus,
Outbreak), shipped over `the.cpq.host` to the manager, whose own lines say
where each came from; a third of those released back to the gateway
(`MID originally N`) and delivered. Times spread over a day.

The lines go through the real indexer (`TrackingIndex.add`, in chunks of
`<log_subscription><chunk_lines>`, 10,000, as the subscription feeds it),
then tracking queries (`logsub.tracking.track`, what `pvoq cli track` and
the console call) run R times each with varying values: sender, recipient,
subject, Message-ID, gateway MID, manager MID, a time range with a sender,
and prints p50/p95 per kind and overall.

Last line: `RESULT tracking_p95 <ms> ms ratio=<100 / p95>` (>= 1 meets the target).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pvoq.logsub.index import GATEWAY, MANAGER, TrackingIndex
from pvoq.logsub.reader import Position
from pvoq.logsub.tracking import Query, track
from pvoq.maillog.writer import format_time

GW = "gw1.example.com"
SMA = "sma.example.com"
START = 1_795_000_000.0   # Nov 2026
FIRST = ("anna", "ben", "carla", "dmitri", "eva", "farid", "greta", "hiro", "ines", "jon",
         "kemal", "lea", "marco", "nadia", "oscar", "paula", "quentin", "rosa", "sven", "tara",
         "billing", "noreply", "info", "sales", "support", "newsletter", "payroll", "security")
LAST = ("smith", "garcia", "muller", "rossi", "dubois", "kowalski", "nakamura", "silva",
        "jensen", "novak", "ivanova", "okafor", "chen", "kumar", "haddad", "larsen")
DOMAINS = [f"{w}{i}.example" for i in range(300) for w in ("mail", "corp")]
LOCAL = ("example.com", "example.net", "sub.example.com")
WORDS = ("invoice", "meeting", "report", "quarterly", "update", "your", "order", "shipped",
         "password", "reset", "lunch", "friday", "contract", "draft", "review", "urgent",
         "payment", "received", "project", "status", "holiday", "schedule", "welcome", "team",
         "confidential", "numbers", "offer", "parcel", "delivery", "account")
CAUGHT = (("Policy", "content filter:confidential_subject", "content filters matched: "
           "content filter:confidential_subject"),
          ("Virus", "a/v verdict:VIRAL Eicar-Test-Signature", "antivirus positive 'Eicar'"),
          ("Outbreak", "VOF rule:url:parcel-track.example", "Outbreak Filters: verdict "
           "positive threat level 4 rule url:parcel-track.example"))


class Logs:
    """The lines of a gateway and its manager, with their ID counters."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.gw: list[tuple[float, str]] = []
        self.sma: list[tuple[float, str]] = []
        self.gw_ids = {"icid": 0, "mid": 0, "dcid": 0}
        self.sma_ids = {"icid": 0, "mid": 0, "dcid": 0}
        self.messages = 0

    def next(self, ids: dict[str, int], kind: str) -> int:
        ids[kind] += 1
        return ids[kind]

    @staticmethod
    def line(out: list[tuple[float, str]], t: float, text: str) -> None:
        out.append((t, text))

    def address(self) -> str:
        r = self.rng
        return f"{r.choice(FIRST)}.{r.choice(LAST)}@{r.choice(DOMAINS)}"

    def connection(self, t: float) -> None:
        """One inbound connection on the gateway carrying 1 to 6 messages."""
        r, gw, log = self.rng, self.gw, self.line
        icid = self.next(self.gw_ids, "icid")
        ip = f"198.51.{r.randrange(256)}.{r.randrange(1, 255)}"
        log(gw, t, f"New SMTP ICID {icid} interface Incoming Mail (192.0.2.10) address {ip} "
                   "reverse dns host unknown verified no")
        log(gw, t, f"ICID {icid} ACCEPT SG UNKNOWNLIST match ALL SBRS none")
        for _ in range(r.randint(1, 6)):
            t += r.random()
            self.message(t, icid)
        log(gw, t + 0.5, f"ICID {icid} close")

    def message(self, t: float, icid: int) -> None:
        r, gw, log = self.rng, self.gw, self.line
        self.messages += 1
        mid = self.next(self.gw_ids, "mid")
        sender = self.address()
        rcpt = f"{r.choice(FIRST)}@{r.choice(LOCAL)}"
        subject = " ".join(r.choice(WORDS) for _ in range(r.randint(2, 6))).capitalize()
        msgid = f"<{r.getrandbits(64):x}.{mid}@{sender.split('@')[1]}>"
        log(gw, t, f"Start MID {mid} ICID {icid}")
        log(gw, t, f"MID {mid} ICID {icid} From: <{sender}>")
        log(gw, t, f"MID {mid} ICID {icid} RID 0 To: <{rcpt}>")
        log(gw, t, f"MID {mid} Message-ID '{msgid}'")
        log(gw, t, f'MID {mid} Subject "{subject}"')
        log(gw, t, f"MID {mid} ready {r.randint(900, 90_000)} bytes from <{sender}>")
        caught = CAUGHT[r.randrange(3)] if r.random() < 0.10 else None
        log(gw, t, f"MID {mid} antivirus " + ("positive 'Eicar'" if caught == CAUGHT[1]
                                               else "negative"))
        if caught is not None and caught is not CAUGHT[1]:
            log(gw, t, f"MID {mid} {caught[2]}")
        if caught is None:
            log(gw, t, f"MID {mid} Outbreak Filters: verdict negative")
            log(gw, t, f"MID {mid} queued for delivery")
            self.deliver(self.gw, self.gw_ids, t + 0.2, mid, "", "192.0.2.25 port 25",
                         f"2.0.0 Ok: queued as {r.getrandbits(40):X}")
            return
        quarantine, reason, _ = caught
        log(gw, t, f'MID {mid} quarantined to "{quarantine}" ({reason})')
        log(gw, t, f'MID {mid} enqueued for transfer to centralized quarantine "{quarantine}" '
                   f"({reason})")
        sma_mid = self.next(self.sma_ids, "mid")
        self.deliver(self.gw, self.gw_ids, t + 0.2, mid,
                     f"to Centralized {quarantine} Quarantine", "192.0.2.1 port 7025",
                     f"2.0.0 Ok: Message {sma_mid} accepted", cpq="the.cpq.host")
        self.arrive(self.sma, self.sma_ids, t + 0.3, sma_mid, sender, rcpt, msgid, subject,
                    f"received from the ESA 192.0.2.10 for centralized quarantine (ESA {GW} "
                    f"MID {mid})")
        log(self.sma, t + 0.3, f'MID {sma_mid} quarantined to "{quarantine}" ({reason})')
        if r.random() < 1 / 3:
            back = t + r.uniform(60, 7200)
            log(self.sma, back, f"MID {sma_mid} released from all quarantines")
            log(self.sma, back, f'MID {sma_mid} released from quarantine "{quarantine}" '
                                "(manual) t=0")
            new = self.next(self.gw_ids, "mid")
            self.deliver(self.sma, self.sma_ids, back, sma_mid,
                         f"on release from Centralized {quarantine} Quarantine",
                         "192.0.2.10 port 7025", f"2.0.0 Ok: Message {new} accepted",
                         cpq="the.cpq.release.host")
            self.arrive(self.gw, self.gw_ids, back + 0.1, new, sender, rcpt, msgid, subject,
                        f"received from the SMA 192.0.2.1 (MID originally {mid}) on release "
                        "from central quarantine")
            log(self.gw, back + 0.1, f"MID {new} queued for delivery")
            self.deliver(self.gw, self.gw_ids, back + 0.2, new, "", "192.0.2.25 port 25",
                         f"2.0.0 Ok: queued as {r.getrandbits(40):X}")

    def arrive(self, out: list[tuple[float, str]], ids: dict[str, int], t: float, mid: int, sender: str,
               rcpt: str, msgid: str, subject: str, origin: str) -> None:
        icid = self.next(ids, "icid")
        log = self.line
        log(out, t, f"New CPQ ICID {icid} interface Management (192.0.2.1) address 192.0.2.10 "
                    "reverse dns host unknown verified no")
        log(out, t, f"Start MID {mid} ICID {icid}")
        log(out, t, f"MID {mid} ICID {icid} From: <{sender}>")
        log(out, t, f"MID {mid} ICID {icid} RID 0 To: <{rcpt}>")
        log(out, t, f"MID {mid} Message-ID '{msgid}'")
        log(out, t, f'MID {mid} Subject "{subject}"')
        log(out, t, f"MID {mid} {origin}")
        log(out, t, f"ICID {icid} close")

    def deliver(self, out: list[tuple[float, str]], ids: dict[str, int], t: float, mid: int, note: str,
                where: str, reply: str, cpq: str | None = None) -> None:
        dcid = self.next(ids, "dcid")
        log = self.line
        address, port = where.split(" port ")
        log(out, t, f"New SMTP DCID {dcid} interface 192.0.2.10 address {address} port {port}")
        if cpq is not None:
            log(out, t, f"DCID {dcid} TLS success protocol TLSv1.3 cipher "
                        f"TLS_AES_256_GCM_SHA384 {cpq}")
        log(out, t, f"Delivery start DCID {dcid} MID {mid} to RID [0]"
                    + (f" {note}" if note else ""))
        log(out, t, f"MID {mid} RID [0] Response '{reply}'")
        log(out, t, f"Message done DCID {dcid} MID {mid} to RID [0]")
        log(out, t, f"Message finished MID {mid} done")
        log(out, t, f"DCID {dcid} close")


def generate(lines: int, seed: int) -> Logs:
    rng = random.Random(seed)
    logs = Logs(rng)
    t = START
    step = 86400 / (lines / 14)   # about a day of mail
    while len(logs.gw) + len(logs.sma) < lines:
        logs.connection(t)
        t += rng.expovariate(1 / step)
    return logs


def written(events: list[tuple[float, str]]) -> list[str]:
    """The log's lines in time order, as an appliance writes them."""
    events.sort(key=lambda e: e[0])
    return [f"{format_time(t)} Info: {text}" for t, text in events]


def chunks(lines: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(lines), size):
        yield lines[i:i + size]


def index_all(index: TrackingIndex, gw: list[str], sma: list[str], chunk: int) -> float:
    """Index both logs, chunk by chunk, as the subscription does; the seconds it took."""
    started = time.perf_counter()
    for name, kind, lines in ((GW, GATEWAY, gw), (SMA, MANAGER, sma)):
        source = index.source(name, kind)
        offset = 0
        for part in chunks(lines, chunk):
            offset += sum(len(x) + 1 for x in part)
            index.add(source, part, position=Position(1, offset, "ab"), stored=offset,
                      pulled_at=time.time())
    return time.perf_counter() - started


def queries(logs: Logs, gw_lines: list[str], rng: random.Random
            ) -> dict[str, Callable[[], Query]]:
    def pick(prefix: str) -> str:
        while True:
            line = gw_lines[rng.randrange(len(gw_lines))]
            if prefix in line:
                return line

    def field(prefix: str, end: str) -> str:
        line = pick(prefix)
        return line.split(prefix, 1)[1].rsplit(end, 1)[0]

    def in_day() -> float:
        return START + rng.uniform(0, 86400)

    return {
        "sender": lambda: Query(sender=field("From: <", ">")),
        "recipient": lambda: Query(recipient=field("To: <", ">")),
        "subject word": lambda: Query(subject=rng.choice(WORDS)),
        "subject": lambda: Query(subject=field('Subject "', '"')),
        "message_id": lambda: Query(message_id=field("Message-ID '", "'")),
        "gateway mid": lambda: Query(mid=rng.randint(1, logs.gw_ids["mid"]), gateway=GW),
        "manager mid": lambda: Query(manager_mid=rng.randint(1, logs.sma_ids["mid"])),
        "time + sender domain": lambda: (lambda t: Query(
            since=t, until=t + 3600, sender=f"@{rng.choice(DOMAINS)}"))(in_day()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40, help="Queries of each kind.")
    parser.add_argument("--chunk", type=int, default=10_000, help="Lines per index.add.")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--dir", type=Path, default=None,
                        help="Keep the index here (and reuse it when it is there).")
    args = parser.parse_args()

    root = args.dir or Path(tempfile.mkdtemp(prefix="pvoq-tracking-"))
    try:
        t0 = time.perf_counter()
        logs = generate(args.lines, args.seed)
        gw, sma = written(logs.gw), written(logs.sma)
        total = len(gw) + len(sma)
        print(f"generated {total:,} lines ({len(gw):,} gateway, {len(sma):,} "
              f"manager) for {logs.messages:,} messages in {time.perf_counter() - t0:.1f}s")
        reuse = args.dir is not None and (root / "tracking.db").exists()
        index = TrackingIndex(root / "tracking.db")
        if reuse:
            print(f"reusing the index in {root} (same --lines and --seed)")
        else:
            took = index_all(index, gw, sma, args.chunk)
            size = sum(p.stat().st_size for p in root.glob("tracking.db*"))
            print(f"indexed in {took:.1f}s ({total / took:,.0f} lines/s); index "
                  f"{size / 2**20:.0f} MiB")
        rng = random.Random(args.seed + 1)
        kinds = queries(logs, gw, rng)
        for make in kinds.values():   # warm the page cache once
            track(index, make())
        times: dict[str, list[float]] = {k: [] for k in kinds}
        found: dict[str, int] = {k: 0 for k in kinds}
        order = [k for k in kinds for _ in range(args.repeat)]
        rng.shuffle(order)
        for kind in order:
            query = kinds[kind]()
            started = time.perf_counter()
            journeys = track(index, query)
            times[kind].append((time.perf_counter() - started) * 1000)
            found[kind] += len(journeys)
        everything = [t for ts in times.values() for t in ts]
        print(f"{'query':<22}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'journeys':>10}")
        for kind, ts in times.items():
            qs = statistics.quantiles(ts, n=20, method="inclusive")
            print(f"{kind:<22}{statistics.median(ts):>8.1f}{qs[18]:>8.1f}{max(ts):>8.1f}"
                  f"{found[kind] / len(ts):>10.1f}")
        p95 = statistics.quantiles(everything, n=20, method="inclusive")[18]
        print(f"{'all':<22}{statistics.median(everything):>8.1f}{p95:>8.1f}"
              f"{max(everything):>8.1f}")
        if args.dir is None:   # retention, once the queries are measured (a kept index stays)
            started = time.perf_counter()
            pruned = index.prune(START + 43200)
            print(f"retention: the first 12 h removed ({pruned.messages:,} messages, "
                  f"{pruned.conns:,} connection lines) in {time.perf_counter() - started:.1f}s")
        index.close()
        print(f"RESULT tracking_p95 {p95:.1f} ms ratio={100 / p95:.2f}")
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
