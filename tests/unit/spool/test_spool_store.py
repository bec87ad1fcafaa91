"""Tests for pvoq.spool.store: the durable body + entry spool and its recovery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pvoq.spool.store import (
    BOUNCED,
    DELETED,
    DELIVERED,
    FINAL_STATES,
    INCOMING,
    PENDING,
    QUEUED,
    Entry,
    EntryState,
    Recipient,
    RecipientStatus,
    Spool,
)

BODY = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


def make_entry(mid: int, *, received: float = 1000.0, hosts: tuple[str | None, ...] = ("example.com",),
               ) -> Entry:
    """An entry of *mid* with one recipient per host in *hosts*."""
    recipients = [Recipient(rid, f"user{rid}@{host or 'example.com'}", host=host)
                  for rid, host in enumerate(hosts)]
    return Entry(mid=mid, sender="a@example.org", recipients=recipients, received=received,
                 size=len(BODY), icid=7, peer="10.1.2.3", meta={"subject": "hi"})


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


class TestEntry:
    def test_json_round_trip(self) -> None:
        """An entry survives to_json/from_json unchanged, recipients included."""
        entry = make_entry(5, hosts=("example.com", "the.cpq.host"))
        entry.recipients[1].status = DELIVERED
        entry.recipients[0].attempts = 2
        entry.transfer_id = "t-123456789"
        assert Entry.from_json(entry.to_json()) == entry

    def test_states_are_their_strings(self) -> None:
        """The state and status names are string enums: the same bytes on disk as before."""
        assert tuple(RecipientStatus) == (PENDING, DELIVERED, BOUNCED, DELETED)
        assert tuple(EntryState) == (INCOMING, QUEUED)
        assert [str(s) for s in RecipientStatus] == ["pending", "delivered", "bounced",
                                                     "deleted"]
        assert [str(s) for s in EntryState] == ["incoming", "queued"]
        assert {"delivered", "bounced", "deleted"} == FINAL_STATES
        entry = make_entry(5)
        entry.state = QUEUED
        entry.recipients[0].status = BOUNCED
        data = entry.to_json()
        assert b'"state":"queued"' in data and b'"status":"bounced"' in data
        plain = json.loads(data)
        assert Entry.from_json(json.dumps(plain, separators=(",", ":")).encode()) == entry
        back = Entry.from_json(data)
        assert back.state is EntryState.QUEUED
        assert back.recipients[0].status is RecipientStatus.BOUNCED
        assert back.to_json() == data

    def test_meta_is_kept_as_written(self) -> None:
        """Entry.meta (EntryMeta) round-trips, nested values included."""
        entry = make_entry(5)
        entry.meta = {"subject": "hi", "sender_group": "RELAYLIST", "plans": {"dsn": {"dsn": 9}},
                      "released": {"origin_mid": 4, "manager_mid": 7, "resume_after": None},
                      "cpq": {"v": 1, "kind": "release"}, "skip": ["antispam"]}
        assert Entry.from_json(entry.to_json()).meta == entry.meta

    def test_json_is_readable(self) -> None:
        """The entry on disk is plain JSON an operator can read."""
        raw = json.loads(make_entry(5).to_json())
        assert raw["mid"] == 5 and raw["recipients"][0]["address"] == "user0@example.com"

    def test_pending_for_filters_host_and_status(self) -> None:
        """pending_for lists only still-pending recipients routed to that host."""
        entry = make_entry(1, hosts=("a.example", "b.example", "a.example"))
        entry.recipients[2].status = DELIVERED
        assert [r.rid for r in entry.pending_for("a.example")] == [0]
        assert [r.rid for r in entry.pending_for("b.example")] == [1]
        assert entry.pending_for("c.example") == []

    def test_finished_only_when_all_final(self) -> None:
        """An entry is finished once every recipient is delivered, bounced or deleted."""
        entry = make_entry(1, hosts=("a", "b", "c"))
        assert not entry.finished
        entry.recipients[0].status = DELIVERED
        entry.recipients[1].status = BOUNCED
        assert not entry.finished
        entry.recipients[2].status = DELETED
        assert entry.finished

    def test_recipient_pending_flag(self) -> None:
        """A recipient is pending exactly while its status is `pending`."""
        r = Recipient(0, "x@example.com")
        assert r.status == PENDING and r.pending
        r.status = DELIVERED
        assert not r.pending


class TestSpool:
    def test_put_then_recover(self, spool: Spool) -> None:
        """A stored message comes back from recovery with its entry and body."""
        entry = make_entry(42)
        spool.put(entry, BODY)
        recovered = Spool(spool.dir).recover()
        assert recovered == [entry]
        assert spool.read_body(42) == BODY

    def test_recover_orders_by_arrival(self, spool: Spool) -> None:
        """Recovery returns entries oldest first, then by MID."""
        spool.put(make_entry(3, received=20.0), BODY)
        spool.put(make_entry(10, received=10.0), BODY)
        spool.put(make_entry(2, received=20.0), BODY)
        assert [e.mid for e in spool.recover()] == [10, 2, 3]

    def test_files_of_an_older_spool_are_taken_in(self, tmp_path: Path) -> None:
        """A spool of per-message files (pvoq 0.1) is imported; a body without entry is dropped."""
        old = tmp_path / "old"
        old.mkdir()
        (old / "1.json").write_bytes(make_entry(1).to_json())
        (old / "1.eml").write_bytes(BODY)
        (old / "2.eml").write_bytes(BODY)  # its entry was never committed
        (old / ".3.json.999.tmp").write_bytes(b"{half")
        spool = Spool(old)
        assert [e.mid for e in spool.recover()] == [1]
        assert spool.read_body(1) == BODY
        assert not list(old.glob("*.json")) and not list(old.glob("*.eml"))
        assert not list(old.glob("*.tmp"))
        spool.close()

    def test_update_persists_recipient_state(self, spool: Spool) -> None:
        """update() makes a recipient's new state durable."""
        entry = make_entry(1, hosts=("a", "b"))
        spool.put(entry, BODY)
        entry.recipients[0].status = DELIVERED
        entry.recipients[1].attempts = 3
        entry.recipients[1].next_attempt = 1234.5
        entry.recipients[1].last_error = "451 try later"
        entry.state = QUEUED
        spool.update(entry)
        (again,) = Spool(spool.dir).recover()
        assert again == entry
        assert again.recipients[0].status == DELIVERED
        assert again.recipients[1].last_error == "451 try later"

    def test_remove_forgets_the_message(self, spool: Spool) -> None:
        """remove() takes the message out for good, also for a restarted spool."""
        spool.put(make_entry(1), BODY)
        spool.remove(1)
        assert 1 not in spool and spool.get(1) is None
        with pytest.raises(FileNotFoundError):
            spool.read_body(1)
        spool.close()
        assert Spool(spool.dir).recover() == []

    def test_remove_of_missing_message(self, spool: Spool) -> None:
        """Removing a MID that is not spooled is harmless."""
        spool.remove(99)
        assert spool.recover() == []

    def test_get_returns_the_last_committed_entry(self, spool: Spool) -> None:
        """get() reads the latest version of an entry; an unknown MID gives None."""
        entry = make_entry(4)
        spool.put(entry, BODY)
        entry.state = QUEUED
        spool.update(entry)
        assert spool.get(4) == entry and spool.get(5) is None
        assert 4 in spool and spool.mids() == [4]

    def test_async_changes_are_committed_together(self, spool: Spool) -> None:
        """Concurrent put/update/remove from the event loop all land, in order per message."""
        import asyncio

        async def one(mid: int) -> None:
            entry = make_entry(mid)
            await spool.put_async(entry, BODY + str(mid).encode())
            entry.state = QUEUED
            await spool.update_async(entry)
            if mid % 2:
                await spool.remove_async(mid)

        async def main() -> None:
            await asyncio.gather(*(one(mid) for mid in range(1, 41)))

        asyncio.run(main())
        spool.close()
        again = Spool(spool.dir)
        assert again.mids() == list(range(2, 41, 2))
        assert all(e.state == QUEUED for e in again.recover())
        assert again.read_body(8) == BODY + b"8"

    def test_changes_handed_in_soon_land_in_order(self, spool: Spool) -> None:
        """`update_soon`/`remove_soon` return at once; what they hand in is committed in
        order, before `close` returns, and a later put of the same MID is not overtaken."""
        import asyncio

        errors: list[BaseException] = []

        async def main() -> None:
            for mid in range(1, 21):
                entry = make_entry(mid)
                await spool.put_async(entry, BODY)
                entry.state = QUEUED
                spool.update_soon(entry, errors.append)
                if mid % 2:
                    spool.remove_soon(mid, errors.append)
            spool.remove_soon(2, errors.append)
            await spool.put_async(make_entry(2), BODY + b"again")

        asyncio.run(main())
        spool.close()
        again = Spool(spool.dir)
        assert again.mids() == list(range(2, 21, 2))
        assert again.read_body(2) == BODY + b"again"
        assert errors == []

    def test_a_failed_change_handed_in_soon_is_reported(self, spool: Spool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
        """A commit that fails after `remove_soon` returned reaches its error callback."""
        import asyncio
        import errno
        import os

        errors: list[BaseException] = []
        spool.put(make_entry(1), BODY)

        def full(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        async def main() -> None:
            monkeypatch.setattr(os, "fdatasync", full)
            spool.remove_soon(1, errors.append)
            for _ in range(200):
                if errors:
                    break
                await asyncio.sleep(0.01)

        asyncio.run(main())
        monkeypatch.undo()
        assert [e.errno for e in errors if isinstance(e, OSError)] == [errno.ENOSPC]
        assert 1 in spool
