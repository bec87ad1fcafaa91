"""The work queue with a fake `dispose`: batches, pause, failures kept, poison set aside,
suspects handled alone (no scanning, no routing: the queue knows neither)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from pvoq.gateway.workqueue import BATCH, WorkQueue
from pvoq.maillog import MailLog
from pvoq.scan.verdict import ScanError
from pvoq.scan.workers import ScannerLost
from pvoq.spool.claims import MAX_ATTEMPTS, Claims
from pvoq.spool.store import Entry, Recipient, Spool

BODY = b"Subject: hi\r\n\r\nhello\r\n"


class Parts:
    """A spool and mail_logs in a temporary directory, and a fake dispose that records."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.spool = Spool(root / "spool")
        self.maillog = MailLog(root / "logs", appliance="gateway gw.test", serial="SN")
        self.disposed: list[int] = []
        self.running = 0
        self.alone: list[bool] = []  # per dispose: was nothing else under way?
        self.fail: Callable[[Entry], None] = lambda entry: None
        self.made: dict[int, list[Entry]] = {}

    async def dispose(self, entry: Entry, body: bytes) -> Sequence[Entry]:
        self.alone.append(self.running == 0)
        self.running += 1
        try:
            await asyncio.sleep(0.01)
            self.fail(entry)
            assert body == self.spool.read_body(entry.mid)
            self.disposed.append(entry.mid)
            return self.made.pop(entry.mid, [])
        finally:
            self.running -= 1

    def queue(self) -> WorkQueue:
        return WorkQueue(spool=self.spool, maillog=self.maillog, dispose=self.dispose,
                         retry_s=lambda: 0.05)

    def spooled(self, n: int) -> list[Entry]:
        entries = []
        for _ in range(n):
            mid = len(self.spool.mids()) + 1000
            entry = Entry(mid=mid, sender="a@sender.example",
                          recipients=[Recipient(0, "x@example.com")], received=time.time(),
                          size=len(BODY))
            self.spool.put(entry, BODY)
            entries.append(entry)
        return entries

    def log(self) -> str:
        self.maillog.flush()
        return self.maillog.path.read_text()


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    made = Parts(tmp_path)
    yield made
    made.spool.close()
    made.maillog.close()


async def until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_waiting_messages_are_taken_in_batches_of_at_most_BATCH(parts: Parts) -> None:
    """Twenty waiting messages: one claim of sixteen, one of four; all disposed, claims
    released, depth back to nothing."""
    wq = parts.queue()
    entries = parts.spooled(BATCH + 4)
    claimed: list[list[int]] = []
    real_claim = wq.claims.claim_async

    async def claim(mids: list[int]) -> None:
        claimed.append(list(mids))
        await real_claim(mids)

    wq.claims.claim_async = claim  # type: ignore[method-assign]

    async def main() -> None:
        for entry in entries:
            wq.submit(entry)
        assert wq.depth == len(entries)
        wq.start()
        await until(lambda: len(parts.disposed) == len(entries))
        await until(lambda: wq.depth == 0)
        wq.stop()

    asyncio.run(main())
    assert [len(c) for c in claimed] == [BATCH, 4]
    assert sorted(parts.disposed) == sorted(e.mid for e in entries)
    assert wq.claims.suspects() == set()


def test_a_paused_queue_holds_its_messages_until_resumed(parts: Parts) -> None:
    """Paused: nothing is disposed and the depth counts what waits; resumed: all go."""
    wq = parts.queue()
    entries = parts.spooled(3)

    async def main() -> None:
        assert wq.pause() and not wq.pause() and wq.paused
        wq.start()
        for entry in entries:
            wq.submit(entry, BODY)
        await asyncio.sleep(0.1)
        assert parts.disposed == [] and wq.depth == 3
        assert wq.resume() and not wq.resume() and not wq.paused
        await until(lambda: len(parts.disposed) == 3)
        wq.stop()

    asyncio.run(main())


def test_what_dispose_makes_is_submitted_in_turn(parts: Parts) -> None:
    """The messages a dispose returns (the parts of a split) are disposed too."""
    wq = parts.queue()
    first, part = parts.spooled(2)
    parts.made[first.mid] = [part]

    async def main() -> None:
        wq.start()
        wq.submit(first)
        await until(lambda: len(parts.disposed) == 2)
        wq.stop()

    asyncio.run(main())
    assert parts.disposed == [first.mid, part.mid]


def test_a_temporary_failure_keeps_the_message_and_tries_again(parts: Parts) -> None:
    """A ScanError: logged, the message stays in the spool and is disposed after the delay."""
    wq = parts.queue()
    [entry] = parts.spooled(1)
    failures = [ScanError("engine busy", stage="antivirus")]

    def fail(e: Entry) -> None:
        if failures:
            raise failures.pop()

    parts.fail = fail

    async def main() -> None:
        wq.start()
        wq.submit(entry)
        await until(lambda: parts.disposed == [entry.mid])
        wq.stop()

    asyncio.run(main())
    assert entry.mid in parts.spool
    assert (f"MID {entry.mid} temporary failure in antivirus: engine busy; message kept in "
            f"the spool, retry in 0.05s") in parts.log()


def test_an_application_fault_keeps_the_message(parts: Parts) -> None:
    """A bug in dispose loses nothing: the message stays, to be retried a minute later."""
    wq = parts.queue()
    [entry] = parts.spooled(1)

    def fail(e: Entry) -> None:
        raise KeyError("boom")

    parts.fail = fail

    async def main() -> None:
        wq.start()
        wq.submit(entry)
        await until(lambda: wq.retrying == 1)
        assert wq.depth == 1  # waiting for its retry, still counted
        wq.stop()

    asyncio.run(main())
    assert entry.mid in parts.spool
    assert (f"MID {entry.mid} application fault in the pipeline: KeyError: 'boom'; message "
            f"kept in the spool, retry in 60s") in parts.log()


def test_a_message_that_kills_its_scanner_is_shunted_to_bad(parts: Parts) -> None:
    """Every loss makes the message a suspect, handled alone; the third moves it to bad/,
    and its neighbours are disposed."""
    wq = parts.queue()
    *innocent, poison = parts.spooled(4)

    def fail(e: Entry) -> None:
        if e.mid == poison.mid:
            raise ScannerLost("a scanner process died (exit code -11)")

    parts.fail = fail

    async def main() -> None:
        wq.start()
        for entry in [poison, *innocent]:
            wq.submit(entry)
        await until(lambda: poison.mid not in parts.spool)
        await until(lambda: wq.depth == 0)
        wq.stop()

    asyncio.run(main())
    assert sorted(parts.disposed) == sorted(e.mid for e in innocent)
    assert (parts.spool.dir / "bad" / f"{poison.mid}.eml").read_bytes() == BODY
    assert parts.alone[-(MAX_ATTEMPTS - 1):] == [True] * (MAX_ATTEMPTS - 1)  # retries alone
    log = parts.log()
    assert log.count(f"MID {poison.mid} temporary failure in the pipeline: a scanner process "
                     f"died (exit code -11); message kept in the spool, scanned again "
                     f"alone") == MAX_ATTEMPTS - 1
    assert (f"MID {poison.mid} moved to {parts.spool.dir / 'bad'}: scanning it stopped a "
            f"scanner process {MAX_ATTEMPTS} times; kept there for an operator") in log


def test_recovered_suspects_are_handled_alone_and_a_repeat_offender_goes_to_bad(
        parts: Parts) -> None:
    """At start, messages claimed when the process died are disposed one at a time, nothing
    else under way; one claimed MAX_ATTEMPTS times goes to bad/ undisposed; the rest batch."""
    entries = parts.spooled(5)
    offender, suspect, *others = entries
    claims = Claims(parts.spool)
    for _ in range(MAX_ATTEMPTS - 1):
        claims.claim([offender.mid])
    claims.claim([offender.mid, suspect.mid])
    wq = parts.queue()
    seen: dict[int, bool] = {}
    real = parts.dispose

    async def dispose(entry: Entry, body: bytes) -> Sequence[Entry]:
        seen[entry.mid] = parts.running == 0
        return await real(entry, body)

    wq.dispose = dispose

    async def main() -> None:
        wq.recover(entries)
        assert wq.depth == 1 + len(others)
        wq.start()
        await until(lambda: len(parts.disposed) == 1 + len(others))
        wq.stop()

    asyncio.run(main())
    assert offender.mid not in parts.disposed and offender.mid not in parts.spool
    assert seen[suspect.mid] is True
    assert parts.disposed[0] == suspect.mid  # suspects first, then the others
    assert (f"MID {offender.mid} moved to {parts.spool.dir / 'bad'}: processing it stopped the "
            f"gateway {MAX_ATTEMPTS} times; kept there for an operator") in parts.log()


class GaveUp:
    """The work queue's `unscannable` hook, recording."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    async def __call__(self, entry: Entry, body: bytes, reason: str) -> None:
        self.calls.append((entry.mid, reason))


def test_a_message_failing_while_others_pass_is_unscannable_after_the_bound(
        parts: Parts) -> None:
    """Five temporary failures of one message while other mail passes: the unscannable
    hook, not a sixth retry."""
    gave_up = GaveUp()
    wq = WorkQueue(spool=parts.spool, maillog=parts.maillog, dispose=parts.dispose,
                   retry_s=lambda: 0.02, unscannable=gave_up, max_failures=lambda: 5)
    [poison] = parts.spooled(1)
    attempts: list[int] = []

    def fail(e: Entry) -> None:
        if e.mid == poison.mid:
            attempts.append(e.mid)
            raise ScanError("cannot parse", stage="antivirus")

    parts.fail = fail

    async def main() -> None:
        wq.start()
        wq.submit(poison)
        while not gave_up.calls:
            [other] = parts.spooled(1)  # other mail keeps passing
            wq.submit(other)
            await asyncio.sleep(0.01)
        await until(lambda: wq.depth == 0)
        wq.stop()

    asyncio.run(main())
    assert len(attempts) == 5
    assert gave_up.calls == [(poison.mid, "5 temporary failures (last: temporary failure in "
                                          "antivirus: cannot parse)")]
    assert (f"MID {poison.mid} temporary failure in antivirus: cannot parse; 5 temporary "
            f"failures while other mail passed: unscannable") in parts.log()


def test_while_nothing_passes_mail_is_held_not_given_up(parts: Parts) -> None:
    """clamd down for everyone: every message fails again and again, none is given up."""
    gave_up = GaveUp()
    wq = WorkQueue(spool=parts.spool, maillog=parts.maillog, dispose=parts.dispose,
                   retry_s=lambda: 0.01, unscannable=gave_up, max_failures=lambda: 2)
    entries = parts.spooled(3)
    attempts: list[int] = []

    def fail(e: Entry) -> None:
        attempts.append(e.mid)
        raise ScanError("clamd unavailable", stage="antivirus")

    parts.fail = fail

    async def main() -> None:
        wq.start()
        for entry in entries:
            wq.submit(entry)
        await until(lambda: len(attempts) >= 15)
        assert wq.depth == 3
        wq.stop()

    asyncio.run(main())
    assert gave_up.calls == []
    assert all(e.mid in parts.spool for e in entries)


def test_a_message_deleted_while_it_waits_for_its_retry_is_forgotten(parts: Parts) -> None:
    """deleterecipients removed it from the spool: its retry disposes of nothing."""
    wq = WorkQueue(spool=parts.spool, maillog=parts.maillog, dispose=parts.dispose,
                   retry_s=lambda: 0.1)
    [entry] = parts.spooled(1)
    failures = [ScanError("engine busy", stage="antivirus")]
    attempts: list[int] = []

    def fail(e: Entry) -> None:
        attempts.append(e.mid)
        if failures:
            raise failures.pop()

    parts.fail = fail

    async def main() -> None:
        wq.start()
        wq.submit(entry)
        await until(lambda: wq.retrying == 1)
        assert [e.mid for e in wq.waiting_retry()] == [entry.mid]
        parts.spool.remove(entry.mid)
        await asyncio.sleep(0.3)
        assert wq.depth == 0
        wq.stop()

    asyncio.run(main())
    assert attempts == [entry.mid] and parts.disposed == []
