"""A raw 8-bit UTF-8 Subject is stored and found as text (SQLite and PostgreSQL)."""

from __future__ import annotations

from qhelpers import body, meta

from pvoq.quarantine.search import SearchQuery, TextFilter
from pvoq.quarantine.store import QuarantineStore
from pvoq.smtp.server import message_info


def test_a_raw_utf8_subject_is_found(make_store: object) -> None:
    store: QuarantineStore = make_store()  # type: ignore[operator]
    raw = body("x").replace(b"Subject: x", "Subject: Grüße aus Köln".encode())
    assert "Grüße".encode() in raw
    info = message_info(raw)
    store.add(mid=1, meta=meta("Policy"), body=raw, origin_ip="10.1.2.1", subject=info.subject)
    rows, total = store.search(SearchQuery(subject=TextFilter("contains", "Grüße")))
    assert total == 1 and [r["id"] for r in rows] == [1]
    assert rows[0]["subject"] == "Grüße aus Köln"
    rows, total = store.search(SearchQuery(subject=TextFilter("contains", "Köln")))
    assert total == 1
