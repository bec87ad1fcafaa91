"""Work the gateway does twice after a crash makes the same messages, not more of them."""

from __future__ import annotations

import asyncio

import pytest

from pvoq.gateway import Gateway
from pvoq.gateway.processing import envelope_of
from pvoq.scan.verdict import PASS, ScanResult, Verdict
from pvoq.spool.store import INCOMING, QUEUED, Entry, Recipient

BODY = b"From: a@sender.example\r\nSubject: two policies\r\n\r\nhello\r\n"


class Crash(Exception):
    """Stands for the process dying at this point."""


def spooled_mids(gw: Gateway) -> set[int]:
    return set(gw.spool.mids())


def incoming(gw: Gateway) -> Entry:
    entry = Entry(mid=gw.ids.next("mid"), sender="a@sender.example",
                  recipients=[Recipient(0, "x@one.example"), Recipient(1, "y@two.example")],
                  received=1.0, size=len(BODY))
    gw.spool.put(entry, BODY)
    return entry


class TestCrashWindows:
    def test_a_split_interrupted_before_the_original_goes_is_not_made_twice(
            self, gateway: Gateway) -> None:
        """Re-splitting after a crash reuses the planned MIDs: two parts, never four."""
        entry = incoming(gateway)
        groups = {"A": [entry.recipients[0]], "B": [entry.recipients[1]]}

        async def crash(mid: int) -> None:
            raise Crash()

        async def scenario() -> tuple[set[int], set[int], set[int], list[Entry]]:
            real_remove = gateway.spool.remove_async
            gateway.spool.remove_async = crash  # type: ignore[method-assign]
            with pytest.raises(Crash):
                await gateway.router.split(entry, groups, ScanResult(), BODY)
            gateway.spool.remove_async = real_remove  # type: ignore[method-assign]
            after_crash = gateway.spool.get(entry.mid)
            assert after_crash is not None
            planned = set(after_crash.meta["plans"]["split"].values())
            before = spooled_mids(gateway)
            regroup = {"A": [after_crash.recipients[0]], "B": [after_crash.recipients[1]]}
            fresh = await gateway.router.split(after_crash, regroup, ScanResult(), BODY)
            return planned, before, spooled_mids(gateway), fresh

        planned, before, after, fresh = asyncio.run(scenario())
        assert len(planned) == 2
        assert before == {entry.mid} | planned
        assert after == planned
        assert fresh == []  # both parts were written (and queued by the recovery) before

    def test_a_split_returns_the_parts_it_wrote_for_the_work_queue(
            self, gateway: Gateway) -> None:
        """The parts of a split are written under their planned MIDs, each with its policy,
        and handed back to be scanned; the original goes."""
        entry = incoming(gateway)
        groups = {"A": [entry.recipients[0]], "B": [entry.recipients[1]]}
        fresh = asyncio.run(gateway.router.split(entry, groups, ScanResult(), BODY))
        assert [p.meta["policy"] for p in fresh] == ["A", "B"]
        assert spooled_mids(gateway) == {p.mid for p in fresh}
        assert [[r.address for r in p.recipients] for p in fresh] == [["x@one.example"],
                                                                        ["y@two.example"]]

    def test_a_duplicate_quarantine_copy_is_made_once(self, gateway: Gateway) -> None:
        """Asking twice for the same copy (a crash in between) leaves one copy."""
        entry = incoming(gateway)
        verdict = Verdict("message_filters", "Policy", "message filter:copy_it")

        async def twice() -> None:
            await gateway.router.duplicate(entry, verdict, BODY)
            again = gateway.spool.get(entry.mid)
            assert again is not None
            await gateway.router.duplicate(again, verdict, BODY)

        asyncio.run(twice())
        assert len(spooled_mids(gateway) - {entry.mid}) == 1


class TestRewrittenBody:
    def test_a_rewrite_reaches_the_disk_only_with_its_routing(self, gateway: Gateway) -> None:
        """A crash before the routed entry is written leaves the original message, incoming,
        to be scanned again; never the rewritten body without its routing."""
        entry = incoming(gateway)
        result = ScanResult(action=PASS, body=b"Subject: [EXTERNAL] two policies\r\n\r\nhi\r\n")
        real = gateway.spool.put_async

        async def crash(*args: object, **kwargs: object) -> None:
            raise Crash

        gateway.spool.put_async = crash  # type: ignore[method-assign,assignment]
        with pytest.raises(Crash):
            asyncio.run(gateway.router.route(entry, result))
        gateway.spool.put_async = real  # type: ignore[method-assign]
        after_crash = gateway.spool.get(entry.mid)
        assert after_crash is not None and after_crash.state == INCOMING
        assert gateway.spool.read_body(entry.mid) == BODY

        writes: list[tuple[str, bytes | None]] = []  # (state, body) of each spool write

        async def put(e: Entry, body: bytes, **kwargs: object) -> None:
            writes.append((e.state, body))
            await real(e, body, **kwargs)

        async def update(e: Entry) -> None:
            writes.append((e.state, None))
            await real_update(e)

        real_update = gateway.spool.update_async
        gateway.spool.put_async = put  # type: ignore[method-assign,assignment]
        gateway.spool.update_async = update  # type: ignore[method-assign]
        asyncio.run(gateway.router.route(after_crash, result))
        assert writes == [(QUEUED, result.body)]  # one record: the rewrite with its routing
        routed = gateway.spool.get(entry.mid)
        assert routed is not None and routed.state == QUEUED
        assert routed.size == len(result.body or b"")
        assert gateway.spool.read_body(entry.mid) == result.body


class TestSenderGroup:
    def test_filters_see_the_group_the_listener_matched_at_arrival(
            self, gateway: Gateway) -> None:
        """An entry that carries its arrival's sender group keeps it (a later HAT, or another
        listener's, does not change it); an older entry without it is matched again."""
        from pvoq.config.hat import match_hat

        entry = incoming(gateway)
        entry.peer = "192.0.2.7"
        public = [x for x in gateway.config.listeners if not x.is_cpq][0]
        assert envelope_of(entry, gateway.config.listeners).sender_group == match_hat(public.hat, "192.0.2.7").group
        entry.meta["sender_group"] = "PARTNERS"
        assert envelope_of(entry, gateway.config.listeners).sender_group == "PARTNERS"
