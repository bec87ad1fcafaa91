"""Message tracking: each message's whole path, from the tracking index, in one value.

`Query` holds the filters (sender, recipient, subject, Message-ID, a
gateway's MID, a manager's MID, a time range) and `track(index, query)` the
answer: one journey per message as it entered a gateway, newest first. A
message found anywhere on its path (the gateway's MID, the manager's copy,
the release the gateway took back) gives the whole journey:

- `gateway`: where it came in: the gateway, ICID, MID, the client's
  connection line, sender, recipients, subject, Message-ID, each scan
  stage's verdict line, and its deliveries (the `the.cpq.host` DCID and the
  manager's reply, or a downstream DCID);
- `manager`: each manager copy (found by the manager's `received from the
  ESA … (ESA <gateway> MID <n>)` line): MID, ICID, the quarantine and release
  lines, its deliveries (`the.cpq.release.host`, the gateway's reply);
- `releases`: each message the gateway took back (`MID <new> … (MID
  originally <n>)`): MID, verdicts, deliveries downstream with the reply;
- `lines`: every line of the path in time order, with the log it is from.

A delivery's reply is the `Response` line, which mail_logs writes only for
the `250` that ends an accepted DATA: it is shown as `250 <text>`.

The same function serves `pvoq cli track` (over the admin socket) and the
web console. Every string in the answer came from mail or from a gateway:
whoever shows it escapes it.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pvoq.admin.protocol import CommandError
from pvoq.logsub.index import FIELD_PREFIX, MANAGER, TOKEN, TrackingIndex

MAX_LIMIT = 1000
MAX_TEXT = 1000
_VERDICT = re.compile(r"^MID \d+ (antivirus |unscannable|content filters |message filters |"
                      r"Outbreak Filters|[\w ]+ matched: )")
_QUARANTINE = re.compile(r"^MID \d+ (quarantined to |enqueued for transfer|released|"
                         r"deleted|delayed|moved|copied)")
_RESPONSE = re.compile(r"^MID \d+ RID \[[\d, ]*\] Response '(.*)'$")
_NEW_DCID = re.compile(r"^New SMTP DCID \d+ interface \S+ address (\S+) port (\d+)")
_CPQ_HOST = re.compile(r"\b(the\.cpq\.(?:release\.)?host)\b")
_LINES_PER_CONNECTION = 20


@dataclass(frozen=True)
class Query:
    """The filters of one tracking query; those left None do not filter."""

    sender: str | None = None        # a whole address: is; otherwise: contains
    recipient: str | None = None
    subject: str | None = None
    message_id: str | None = None
    mid: int | None = None            # a gateway's MID (of *gateway*, if given)
    gateway: str | None = None
    manager_mid: int | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 20

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> Query:
        """The query an admin request asks; `CommandError` naming a bad field."""
        def text(name: str) -> str | None:
            value = args.get(name)
            if value is None or value == "":
                return None
            if not isinstance(value, str) or len(value) > MAX_TEXT or "\x00" in value:
                raise CommandError(f"{name}: text of at most {MAX_TEXT} characters, no NUL")
            return value

        def number(name: str, low: float, high: float, *, integer: bool) -> Any:
            value = args.get(name)
            if value is None or value == "":
                return None
            if isinstance(value, bool) or not isinstance(value, int | float) or \
                    (integer and not isinstance(value, int)) or not low <= value <= high:
                kind = "an integer" if integer else "a number"
                raise CommandError(f"{name}: {kind} from {low:g} to {high:g}")
            return value

        return cls(sender=text("sender"), recipient=text("recipient"), subject=text("subject"),
                   message_id=text("message_id"), mid=number("mid", 1, 2**63 - 1, integer=True),
                   gateway=text("gateway"),
                   manager_mid=number("manager_mid", 1, 2**63 - 1, integer=True),
                   since=number("since", 0, 1e12, integer=False),
                   until=number("until", 0, 1e12, integer=False),
                   limit=number("limit", 1, MAX_LIMIT, integer=True) or 20)


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass
class _Context:
    db: sqlite3.Connection
    names: dict[int, str]
    kinds: dict[int, str]
    ids: dict[str, int] = field(default_factory=dict)


def track(index: TrackingIndex, query: Query) -> list[dict[str, Any]]:
    """The journeys of the messages *query* finds, newest first, at most `query.limit`."""
    with index.reading() as db:
        rows = db.execute("SELECT id, name, kind FROM sources").fetchall()
        ctx = _Context(db, {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows},
                       {r[1]: r[0] for r in rows})
        roots: list[tuple[int, int]] = []
        seen: set[tuple[int, int]] = set()
        for src, mid, origin_host, origin_mid in _candidates(ctx, query):
            root = _root(ctx, src, mid, origin_host, origin_mid)
            if root not in seen:
                seen.add(root)
                roots.append(root)
            if len(roots) >= query.limit:
                break
        return _journeys(ctx, roots)


ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>.]+")
"""A --sender or --recipient that is a whole address (`local@domain.tld`) matches that address
(any case); any other value, the addresses that contain it."""
_DENSE = 500      # a word in this many messages or more is common
_COUNTED = 5_000   # words are counted up to this many messages
_MORE_WORDS = 2    # common words checked beside the rarest, when all are common


def _count(db: sqlite3.Connection, token: str, cap: int) -> int:
    """How many messages hold *token* (counted up to *cap*)."""
    return int(db.execute("SELECT count(*) FROM (SELECT 1 FROM tokens WHERE token = ? LIMIT ?)",
                          (token, cap)).fetchone()[0])


def _plan(db: sqlite3.Connection, filters: list[tuple[str, str]]) -> tuple[list[str], bool]:
    """How to find what the "contains" *filters* match: the words or pairs of words (held
    whole by a filter, rarest first) to find the messages by, none to look at every message;
    and whether the matches are likely many (so that a walk from the newest finds a page
    soon: a single common word)."""
    whole: list[tuple[int, str]] = []
    common_word = False
    for name, value in filters:
        text = value.lower()
        found = list(TOKEN.finditer(text))
        inner = [m.start() > 0 and m.end() < len(text) for m in found]
        prefix = FIELD_PREFIX[name]
        for k, m in enumerate(found):
            if inner[k]:
                whole.append((_count(db, prefix + m.group(), _COUNTED), prefix + m.group()))
                if k + 1 < len(found) and inner[k + 1]:
                    pair = f"{prefix}{m.group()} {found[k + 1].group()}"
                    whole.append((_count(db, pair, _COUNTED), pair))
        if len(found) == 1 and _count(db, prefix + found[0].group(), _DENSE) >= _DENSE:
            common_word = True
    whole.sort()
    if whole and whole[0][0] < _DENSE:
        return [whole[0][1]], False          # a rare word: the few messages holding it
    if len(whole) > 1:
        return [t for _, t in whole[:1 + _MORE_WORDS]], False   # common words together
    return [], common_word or bool(whole)


def _candidates(ctx: _Context, q: Query) -> list[tuple[int, int, str | None, int | None]]:
    where: list[str] = []
    params: list[Any] = []
    sender_is = q.sender is not None and ADDRESS.fullmatch(q.sender) is not None
    recipient_is = q.recipient is not None and ADDRESS.fullmatch(q.recipient) is not None
    contains = [(f, v) for f, v in (("sender", None if sender_is else q.sender),
                                    ("recipient", None if recipient_is else q.recipient),
                                    ("subject", q.subject)) if v is not None]
    if q.sender is not None and sender_is:
        where.append("m.sender = ? COLLATE NOCASE")
        params.append(q.sender)
    elif q.sender is not None:
        where.append("m.sender LIKE ? ESCAPE '\\'")
        params.append(_like(q.sender))
    if q.subject is not None:
        where.append("m.subject LIKE ? ESCAPE '\\'")
        params.append(_like(q.subject))
    if q.message_id is not None:
        bare = q.message_id.strip().strip("<>")
        where.append("m.message_id IN (?, ?)")
        params += [bare, f"<{bare}>"]
    if q.recipient is not None and not recipient_is:
        where.append("EXISTS (SELECT 1 FROM recipients r WHERE r.src = m.src AND "
                     "r.mid = m.mid AND r.rcpt LIKE ? ESCAPE '\\')")
        params.append(_like(q.recipient))
    if q.mid is not None:
        gateways = [i for i, k in ctx.kinds.items() if k != MANAGER and
                    (q.gateway is None or ctx.names[i] == q.gateway.lower())]
        where.append(f"m.mid = ? AND m.src IN ({','.join('?' * len(gateways)) or 'NULL'})")
        params += [q.mid, *gateways]
    elif q.gateway is not None:
        where.append("(m.src = ? OR m.origin_host = ?)")
        params += [ctx.ids.get(q.gateway.lower(), -1), q.gateway.lower()]
    if q.manager_mid is not None:
        managers = [i for i, k in ctx.kinds.items() if k == MANAGER]
        where.append(f"m.mid = ? AND m.src IN ({','.join('?' * len(managers)) or 'NULL'})")
        params += [q.manager_mid, *managers]
    if q.since is not None:
        where.append("m.t_first >= ?")
        params.append(q.since)
    if q.until is not None:
        where.append("m.t_first <= ?")
        params.append(q.until)
    source, order = "messages m", "m.t_first"
    if recipient_is:   # a whole address: the messages to it, by the address index
        source = "recipients x JOIN messages m ON m.src = x.src AND m.mid = x.mid"
        where.insert(0, "x.rcpt = ? COLLATE NOCASE")
        params.insert(0, q.recipient)
        order = "+m.t_first"
    elif sender_is:
        order = "+m.t_first"   # by the sender index, then sorted
    elif contains and q.mid is None and q.manager_mid is None and q.message_id is None:
        found_by, many = _plan(ctx.db, contains)
        if found_by:
            # the messages holding those words, found by them; the filters then check them
            source = "tokens t JOIN messages m ON m.src = t.src AND m.mid = t.mid"
            also = ["EXISTS (SELECT 1 FROM tokens u WHERE u.token = ? AND u.src = t.src "
                    "AND u.mid = t.mid)"] * (len(found_by) - 1)
            where[:0] = ["t.token = ?", *also]
            params[:0] = found_by
        elif not many:
            order = "+m.t_first"   # rare matches: one pass over the messages, then a sort
    sql = (f"SELECT m.src, m.mid, m.origin_host, m.origin_mid FROM {source}"
           + (" WHERE " + " AND ".join(where) if where else "")
           + f" ORDER BY {order} DESC, m.mid DESC LIMIT ?")
    params.append(q.limit * 4)
    return [(r[0], r[1], r[2], r[3]) for r in ctx.db.execute(sql, params)]


def _root(ctx: _Context, src: int, mid: int, host: str | None, origin: int | None
          ) -> tuple[int, int]:
    """The message as it first entered a gateway (or the one found, if that is unknown)."""
    if origin is None:
        return src, mid
    if host is None:
        return src, origin                         # a release: MID originally <origin>
    gateway = ctx.ids.get(host)
    return (gateway, origin) if gateway is not None else (src, mid)


Key = tuple[int, int]   # (source id, MID)
_BATCH = 500


def _in(values: list[int]) -> str:
    return ",".join("?" * len(values))


def _journeys(ctx: _Context, roots: list[Key]) -> list[dict[str, Any]]:
    """The journeys of *roots*, with a few batched queries for them all."""
    copies: dict[Key, list[Key]] = {r: [] for r in roots}
    releases: dict[Key, list[Key]] = {r: [] for r in roots}
    for src, mids in _by_source(r for r in roots if ctx.kinds.get(r[0]) != MANAGER).items():
        for part in _batches(mids):
            for m_src, m_mid, origin in ctx.db.execute(
                    f"SELECT src, mid, origin_mid FROM messages WHERE origin_host = ? AND "
                    f"origin_mid IN ({_in(part)}) ORDER BY t_first", (ctx.names[src], *part)):
                copies[(src, origin)].append((m_src, m_mid))
            for r_mid, origin in ctx.db.execute(
                    f"SELECT mid, origin_mid FROM messages INDEXED BY messages_origin_mid "
                    f"WHERE src = ? AND origin_mid IN "
                    f"({_in(part)}) AND origin_host IS NULL ORDER BY t_first", (src, *part)):
                releases[(src, origin)].append((src, r_mid))
    wanted = set(roots) | {k for ks in copies.values() for k in ks} | \
        {k for ks in releases.values() for k in ks}
    found = _messages(ctx, wanted)
    out = []
    for root in roots:
        lines: list[dict[str, Any]] = []
        journey: dict[str, Any] = {"gateway": None, "manager": [], "releases": []}
        first, first_lines = found[root]
        lines += first_lines
        if ctx.kinds.get(root[0]) == MANAGER:
            journey["manager"].append(first)
        else:
            journey["gateway"] = first
            for key in copies[root]:
                journey["manager"].append(found[key][0])
                lines += found[key][1]
            for key in releases[root]:
                journey["releases"].append(found[key][0])
                lines += found[key][1]
        lines.sort(key=lambda line: (line["time"], line["seq"]))
        for line in lines:
            del line["seq"]
        journey["lines"] = lines
        out.append(journey)
    return out


def _by_source(keys: Any) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for src, mid in keys:
        grouped.setdefault(src, []).append(mid)
    return grouped


def _batches(values: list[int]) -> list[list[int]]:
    return [values[i:i + _BATCH] for i in range(0, len(values), _BATCH)]


def _messages(ctx: _Context, keys: set[Key]
              ) -> dict[Key, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each message of *keys* as tracking shows it, and its lines (with their `seq`)."""
    db = ctx.db
    out: dict[Key, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for src, mids in _by_source(sorted(keys)).items():
        name = ctx.names[src]
        for part in _batches(mids):
            rows = {r[0]: r[1:] for r in db.execute(
                "SELECT mid, icid, t_first, t_last, sender, message_id, subject, origin_host, "
                "origin_mid, (SELECT json_group_array(rcpt) FROM (SELECT rcpt FROM recipients r "
                "WHERE r.src = m.src AND r.mid = m.mid ORDER BY rcpt)) FROM messages m "
                f"WHERE src = ? AND mid IN ({_in(part)})", (src, *part))}
            events: dict[int, list[tuple[int, float, int | None, str]]] = {m: [] for m in part}
            for mid, seq, t, dcid, text in db.execute(
                    f"SELECT mid, seq, t, dcid, text FROM events WHERE src = ? AND mid IN "
                    f"({_in(part)}) ORDER BY seq", (src, *part)):
                events[mid].append((seq, t, dcid, text))
            icids = sorted({r[0] for r in rows.values() if r[0] is not None})
            dcids = sorted({e[2] for es in events.values() for e in es if e[2] is not None})
            conns: dict[tuple[str, int], list[tuple[int, float, str]]] = {}
            for kind, ids in (("ICID", icids), ("DCID", dcids)):
                for chunk in _batches(ids):
                    for conn_id, seq, t, text in db.execute(
                            f"SELECT id, seq, t, text FROM conns WHERE src = ? AND kind = ? AND "
                            f"id IN ({_in(chunk)}) ORDER BY seq", (src, kind, *chunk)):
                        lines = conns.setdefault((kind, conn_id), [])
                        if len(lines) < _LINES_PER_CONNECTION:
                            lines.append((seq, t, text))
            for mid in part:
                out[(src, mid)] = _message(name, mid, rows.get(mid), events[mid], conns)
    return out


def _message(name: str, mid: int, row: tuple[Any, ...] | None,
             events: list[tuple[int, float, int | None, str]],
             conns: dict[tuple[str, int], list[tuple[int, float, str]]]
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    icid, t_first, t_last, sender, message_id, subject, origin_host, origin_mid, rcpts = \
        row if row is not None else (None,) * 8 + ("[]",)
    recipients = [str(r) for r in json.loads(rcpts or "[]")]
    keys = [("ICID", icid)] if icid is not None else []
    keys += [("DCID", d) for d in dict.fromkeys(e[2] for e in events if e[2] is not None)]
    mine = {key: conns[key] for key in keys if key in conns}
    lines = [{"source": name, "time": t, "text": text, "seq": seq}
             for seq, t, _, text in events]
    lines += [{"source": name, "time": t, "text": text, "seq": seq}
              for found in mine.values() for seq, t, text in found]
    client = next((text for _, _, text in conns.get(("ICID", icid or 0), [])
                   if text.startswith("New ")), None)
    return {
        "source": name, "mid": mid, "icid": icid, "first": t_first, "last": t_last,
        "sender": sender, "recipients": recipients, "subject": subject,
        "message_id": message_id, "connection": client,
        "origin": None if origin_mid is None else {"host": origin_host or name,
                                                   "mid": origin_mid},
        "verdicts": [e[3] for e in events if _VERDICT.match(e[3])],
        "quarantine": [e[3] for e in events if _QUARANTINE.match(e[3])],
        "deliveries": _deliveries(events, mine),
    }, lines


def _deliveries(events: list[tuple[int, float, int | None, str]],
                conn_lines: dict[tuple[str, int], list[tuple[int, float, str]]]
                ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for _, t, dcid, text in events:
        if dcid is not None and text.startswith("Delivery start"):
            current = {"dcid": dcid, "time": t, "destination": None, "address": None,
                       "port": None, "reply": None, "done": False}
            for _, _, line in conn_lines.get(("DCID", dcid), []):
                if (m := _NEW_DCID.match(line)) is not None:
                    current["address"], current["port"] = m.group(1), int(m.group(2))
                if (c := _CPQ_HOST.search(line)) is not None:
                    current["destination"] = c.group(1)
            if current["destination"] is None:
                if "Centralized" in text and "release" not in text:
                    current["destination"] = "the.cpq.host"
                elif "on release from" in text:
                    current["destination"] = "the.cpq.release.host"
                elif current["address"] is not None:
                    current["destination"] = f"{current['address']}:{current['port']}"
            out.append(current)
        elif current is not None and (m := _RESPONSE.match(text)) is not None:
            if current["reply"] is None:
                current["reply"] = f"250 {m.group(1)}"
        elif current is not None and dcid == current["dcid"] and text.startswith("Message done"):
            current["done"] = True
    return out
