"""Shared builders for the quarantine tests: messages, metadata and a recording settler."""

from __future__ import annotations

import itertools
from email.message import EmailMessage
from typing import Any

from pvoq.quarantine.store import QuarantineStore

_transfers = itertools.count(1)


def body(subject: str = "Q3 numbers", attachment: tuple[str, int] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.com"
    msg["Subject"] = subject
    msg.set_content("numbers\n")
    if attachment:
        msg.add_attachment(b"a" * attachment[1], maintype="application",
                           subtype="octet-stream", filename=attachment[0])
    return msg.as_bytes()


def meta(*quarantines: str | tuple[str, str], sender: str = "alice@example.org",
         recipients: tuple[str, ...] = ("bob@example.com",), gateway: str = "gw1.example.com",
         transfer_id: str | None = None) -> dict[str, Any]:
    """CPQ metadata of a transfer held in *quarantines* (name, or (name, reason))."""
    qs = [(q, f"content filter:{q.lower()}_rule") if isinstance(q, str) else q
          for q in quarantines]
    return {
        "v": 1, "kind": "quarantine",
        "transfer_id": transfer_id or f"transfer-{next(_transfers):08d}",
        "origin": {"hostname": gateway, "serial": "GW-SN", "mid": 42},
        "sender": sender,
        "recipients": [{"rid": i, "address": a} for i, a in enumerate(recipients)],
        "quarantines": [{"name": n, "reason": r, "stage": "content_filters"} for n, r in qs],
        "received": 1700000000.0, "size": 0,
    }


def put(store: QuarantineStore, mid: int, *quarantines: str | tuple[str, str],
        subject: str = "Q3 numbers", attachment: tuple[str, int] | None = None,
        origin_ip: str = "10.1.2.1", **kwargs: Any) -> int:
    """Quarantine one message; its MID."""
    raw = body(subject, attachment)
    stored, duplicate = store.add(mid=mid, meta=meta(*quarantines, **kwargs), body=raw,
                                  origin_ip=origin_ip, subject=subject)
    assert not duplicate
    return stored


class RecordingSettler:
    """The manager's part of a settlement, recorded: releases listed, bodies dropped."""

    def __init__(self, store: QuarantineStore) -> None:
        self.store = store
        self.settled: list[tuple[int, str, str, tuple[str, ...]]] = []
        self.copies: list[tuple[int, str]] = []

    def settle(self, mid: int, state: str, how: str = "manual",
               names: tuple[str, ...] | None = None) -> None:
        self.settled.append((mid, state, how, names or ()))
        self.store.finish(mid, state)

    def settle_many(self, settled: list[tuple[int, str, tuple[str, ...]]], how: str) -> None:
        for mid, state, names in settled:
            self.settle(mid, state, how, names)

    def allocate_mid(self) -> int:
        self.next_mid = getattr(self, "next_mid", 50000) + 1
        return self.next_mid

    def send_copy(self, mid: int, address: str) -> int:
        self.copies.append((mid, address))
        return 90000 + len(self.copies)
