"""Tracking over an index fed the lines of one released message (as the demo logs them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvoq.admin.protocol import CommandError
from pvoq.cli.render import safe
from pvoq.cli.track import render
from pvoq.logsub.index import GATEWAY, MANAGER, TrackingIndex
from pvoq.logsub.lines import parse
from pvoq.logsub.reader import Position
from pvoq.logsub.tracking import Query, track

T = "Mon Nov 30 15:11:05 2026 Info: "
GW_LINES = [T + x for x in [
    "Begin Logfile",
    "New SMTP ICID 2 interface Incoming Mail (127.0.0.1) address 192.0.2.7 reverse dns host "
    "unknown verified no",
    "ICID 2 ACCEPT SG ALL match ALL SBRS none",
    "Start MID 2 ICID 2",
    "MID 2 ICID 2 From: <alice@sender.example>",
    "MID 2 ICID 2 RID 0 To: <bob@example.com>",
    "MID 2 ICID 2 To: <mallory@example.com> Rejected by RAT",
    "MID 2 Message-ID '<42@sender.example>'",
    'MID 2 Subject "Confidential: Q3 numbers"',
    "MID 2 ready 400 bytes from <alice@sender.example>",
    "ICID 2 close",
    "MID 2 antivirus negative",
    "MID 2 content filters matched: content filter:confidential_subject",
    "MID 2 Outbreak Filters: verdict negative",
    'MID 2 quarantined to "Policy" (content filter:confidential_subject)',
    "New SMTP DCID 2 interface 127.0.0.1 address 127.0.0.1 port 24072",
    "DCID 2 TLS success protocol TLSv1.3 cipher TLS_AES_256_GCM_SHA384 the.cpq.host",
    "Delivery start DCID 2 MID 2 to RID [0] to Centralized Policy Quarantine",
    "MID 2 RID [0] Response '2.0.0 Ok: Message 1 accepted'",
    "Message done DCID 2 MID 2 to RID [0] (centralized policy quarantine)",
    "Message finished MID 2 done",
    "New CPQ ICID 5 interface Incoming Mail (127.0.0.1) address 127.0.0.1 reverse dns host "
    "unknown verified no",
    "Start MID 5 ICID 5",
    "MID 5 ICID 5 From: <alice@sender.example>",
    "MID 5 ICID 5 RID 0 To: <bob@example.com>",
    'MID 5 Subject "Confidential: Q3 numbers"',
    "MID 5 received from the SMA 127.0.0.1 (MID originally 2) on release from central "
    "quarantine",
    "MID 5 queued for delivery",
    "New SMTP DCID 4 interface 127.0.0.1 address 127.0.0.1 port 18045",
    "Delivery start DCID 4 MID 5 to RID [0]",
    "MID 5 RID [0] Response '2.0.0 Ok: stored as 2'",
    "Message done DCID 4 MID 5 to RID [0]",
]]
MANAGER_LINES = [T + x for x in [
    "Start MID 1 ICID 1",
    "MID 1 ICID 1 From: <alice@sender.example>",
    "MID 1 ICID 1 RID 0 To: <bob@example.com>",
    'MID 1 Subject "Confidential: Q3 numbers"',
    "MID 1 received from the ESA 127.0.0.1 for centralized quarantine (ESA GW1.example MID 2)",
    'MID 1 quarantined to "Policy" (content filter:confidential_subject)',
    "MID 1 released from all quarantines",
    "DCID 1 TLS success protocol TLSv1.3 cipher TLS_AES_256_GCM_SHA384 the.cpq.release.host",
    "Delivery start DCID 1 MID 1 to RID [0] on release from Centralized Policy Quarantine",
    "MID 1 RID [0] Response '2.0.0 Ok: Message 5 accepted'",
]]


@pytest.fixture
def index(tmp_path: Path) -> TrackingIndex:
    idx = TrackingIndex(tmp_path / "tracking.db")
    for name, kind, lines in (("gw1.example", GATEWAY, GW_LINES),
                              ("manager.example", MANAGER, MANAGER_LINES)):
        source = idx.source(name, kind)
        half = len(lines) // 2   # in two chunks: a message's rows merge across them
        idx.add(source, lines[:half], position=Position(1, 10, "ab"), stored=10, pulled_at=1.0)
        idx.add(idx.source(name, kind), lines[half:], position=Position(1, 20, "ab"), stored=20,
                pulled_at=2.0)
    return idx


class TestParse:
    def test_fields_are_read_from_their_lines(self) -> None:
        start = parse(GW_LINES[3])
        assert start is not None and (start.mid, start.icid) == (2, 2)
        sender = parse(GW_LINES[4])
        assert sender is not None and sender.sender == "alice@sender.example"
        rejected = parse(GW_LINES[6])
        assert rejected is not None and rejected.recipient is None   # refused: no recipient
        delivery = parse(GW_LINES[17])
        assert delivery is not None and (delivery.mid, delivery.dcid) == (2, 2)
        conn = parse(GW_LINES[16])
        assert conn is not None and (conn.mid, conn.conn, conn.conn_id) == (None, "DCID", 2)
        esa = parse(MANAGER_LINES[4])
        assert esa is not None and (esa.origin_host, esa.origin_mid) == ("gw1.example", 2)

    @pytest.mark.parametrize("line", ["", "garbage", "Mon Nov 30 15:11:05 2026 Loud: MID 1 x",
                                      "Mon Nox 30 15:11:05 2026 Info: MID 1 x",
                                      T + "Begin Logfile", T + "Version: pvoq 1"])
    def test_other_lines_give_nothing(self, line: str) -> None:
        assert parse(line) is None


class TestTrack:
    def test_the_whole_path_from_any_filter(self, index: TrackingIndex) -> None:
        for query in (Query(subject="q3 NUMBERS"), Query(sender="alice@"),
                      Query(recipient="bob@"), Query(message_id="42@sender.example"),
                      Query(message_id="<42@sender.example>"),
                      Query(mid=2, gateway="gw1.example"), Query(mid=5), Query(manager_mid=1),
                      Query(since=0, until=2e9, gateway="GW1.example")):
            journey = track(index, query)
            assert len(journey) == 1, query
            j = journey[0]
            assert (j["gateway"]["mid"], j["gateway"]["icid"]) == (2, 2), query
            assert j["manager"][0]["mid"] == 1 and j["releases"][0]["mid"] == 5
        j = track(index, Query(subject="Q3"))[0]
        g = j["gateway"]
        assert g["recipients"] == ["bob@example.com"]
        assert g["message_id"] == "<42@sender.example>"
        assert g["verdicts"] == ["MID 2 antivirus negative", "MID 2 content filters matched: "
                                 "content filter:confidential_subject",
                                 "MID 2 Outbreak Filters: verdict negative"]
        assert g["deliveries"] == [{"dcid": 2, "time": g["deliveries"][0]["time"],
                                    "destination": "the.cpq.host", "address": "127.0.0.1",
                                    "port": 24072, "reply": "250 2.0.0 Ok: Message 1 accepted",
                                    "done": True}]
        assert g["connection"].startswith("New SMTP ICID 2 ") and "192.0.2.7" in g["connection"]
        m = j["manager"][0]
        assert m["origin"] == {"host": "gw1.example", "mid": 2}
        assert m["deliveries"][0]["destination"] == "the.cpq.release.host"
        r = j["releases"][0]
        assert r["origin"] == {"host": "gw1.example", "mid": 2}
        assert r["deliveries"][0]["reply"] == "250 2.0.0 Ok: stored as 2"
        assert r["deliveries"][0]["destination"] == "127.0.0.1:18045"
        assert len(j["lines"]) == len(GW_LINES) - 1 + len(MANAGER_LINES)  # Begin Logfile not

    def test_filters_that_match_nothing(self, index: TrackingIndex) -> None:
        for query in (Query(sender="carol"), Query(subject="100%"), Query(mid=1),
                      Query(manager_mid=2), Query(since=2e9), Query(mid=2, gateway="gw9")):
            assert track(index, query) == [], query

    @pytest.mark.parametrize(("args", "field"), [
        ({"mid": "2"}, "mid"), ({"mid": 0}, "mid"), ({"manager_mid": True}, "manager_mid"),
        ({"since": "yesterday"}, "since"), ({"limit": 5000}, "limit"),
        ({"subject": "x" * 1001}, "subject"), ({"sender": "a\x00b"}, "sender")])
    def test_bad_arguments_name_their_field(self, args: dict[str, object], field: str) -> None:
        with pytest.raises(CommandError, match=f"^{field}: "):
            Query.from_args(args)


class TestRender:
    def test_mail_borne_text_cannot_drive_the_terminal(self, index: TrackingIndex) -> None:
        journey = track(index, Query(mid=2))[0]
        journey["gateway"]["subject"] = "hi\x1b]52;c;evil\x07 \u202egnp.exe\r\n[bold]x[/]"
        journey["lines"][0]["text"] = "\x1b[2J"
        out = "\n".join(render(journey, 1, 1))
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
        assert "\r" not in out and "hi\\x1b]52;c;evil\\x07 \\u202egnp.exe\\x0d\\x0a" in out
        assert "Release on gw1.example: MID 5 (MID originally 2)" in out
        assert "Delivery: DCID 4 to 127.0.0.1:18045: 250 2.0.0 Ok: stored as 2" in out

    def test_safe_keeps_ordinary_text(self) -> None:
        assert safe("Grüße [x] <a@b>") == "Grüße [x] <a@b>"


class TestWordIndex:
    """A "contains" filter finds the same messages whether a word of it drives the query or
    every message is scanned."""

    SENDERS = ("ann.lee@corp1.example", "ann.leeds@corp1.example", "bob@corp11.example",
               "joann.lee@corp1.example.net", "ANN.LEE@CORP1.EXAMPLE")

    @pytest.fixture
    def many(self, tmp_path: Path) -> TrackingIndex:
        idx = TrackingIndex(tmp_path / "words.db")
        lines = []
        for mid in range(1, 41):
            sender = self.SENDERS[mid % len(self.SENDERS)]
            lines += [T + f"Start MID {mid} ICID {mid}",
                      T + f"MID {mid} ICID {mid} From: <{sender}>",
                      T + f"MID {mid} ICID {mid} RID 0 To: <rcpt{mid % 3}@example.com>",
                      T + f'MID {mid} Subject "Invoice {mid % 4} re-invoiced (draft)"']
        idx.add(idx.source("gw1.example", GATEWAY), lines, position=Position(1, 1, "ab"),
                stored=1, pulled_at=1.0)
        return idx

    @pytest.mark.parametrize("query", [
        Query(sender="ann.lee@corp1.example", limit=100), Query(sender=".lee@", limit=100),
        Query(sender="@corp1.", limit=100), Query(sender="ann", limit=100),
        Query(recipient="rcpt1@example.com", limit=100), Query(subject="invoice 3", limit=100),
        Query(subject="re-invoiced (draft)", limit=100), Query(subject="voice", limit=100),
        Query(sender="@corp1.example", subject=" 2 ", limit=100)])
    def test_same_answer_either_way(self, many: TrackingIndex, query: Query,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
        import pvoq.logsub.tracking as tracking

        by_word = {j["gateway"]["mid"] for j in track(many, query)}
        monkeypatch.setattr(tracking, "_plan", lambda db, filters: ([], False))   # scan all
        by_scan = {j["gateway"]["mid"] for j in track(many, query)}
        monkeypatch.setattr(tracking, "_DENSE", 1)   # every word common: words together
        together = {j["gateway"]["mid"] for j in track(many, query)}
        assert by_word == by_scan == together and by_word

    def test_a_whole_address_is_matched_exactly_in_any_case(self, many: TrackingIndex) -> None:
        senders = {j["gateway"]["sender"] for j in track(many, Query(sender="Ann.Lee@corp1.example",
                                                                     limit=100))}
        assert senders == {"ann.lee@corp1.example", "ANN.LEE@CORP1.EXAMPLE"}
        part = {j["gateway"]["sender"] for j in track(many, Query(sender="ann.lee@corp1",
                                                                  limit=100))}
        assert "joann.lee@corp1.example.net" in part   # not a whole address: contains
        to = {j["gateway"]["recipients"][0] for j in track(many, Query(
            recipient="RCPT1@example.com", limit=100))}
        assert to == {"rcpt1@example.com"}
