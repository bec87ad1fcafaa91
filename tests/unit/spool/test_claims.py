"""Poison-message claims: counts survive a crash, three strikes move a message to bad/."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pvoq.spool.claims import MAX_ATTEMPTS, Claims
from pvoq.spool.store import Entry, Recipient, Spool


def reopened(path: Path) -> Claims:
    """The claims as a restarted gateway reads them back from its spool."""
    spool = Spool(path)
    claims = Claims(spool)
    spool.close()
    return claims


class TestClaims:
    def test_counts_grow_across_restarts_until_cleared(self, tmp_path: Path) -> None:
        """A MID claimed again after a restart has its count raised; waiting suspects keep theirs."""
        path = tmp_path / "spool"
        spool = Spool(path)
        Claims(spool).claim([1, 2])
        spool.close()
        after_crash = Claims(spool := Spool(path))
        assert after_crash.suspects() == {1, 2}
        after_crash.claim([1])
        spool.close()
        again = Claims(spool := Spool(path))
        assert again.attempts(1) == 2 and again.attempts(2) == 1
        again.claim([1])
        spool.close()
        assert reopened(path).attempts(1) == MAX_ATTEMPTS

    def test_a_processed_message_is_forgotten_at_the_next_claim(self, tmp_path: Path) -> None:
        """done() drops a message's count; the next claim no longer lists it."""
        spool = Spool(tmp_path / "spool")
        claims = Claims(spool)
        claims.claim([1, 2])
        claims.done([1, 2])
        asyncio.run(claims.claim_async([3]))
        spool.close()
        assert reopened(tmp_path / "spool").suspects() == {3}

    def test_keep_only_forgets_messages_no_longer_waiting(self, tmp_path: Path) -> None:
        """Counts of messages that finished before the crash are dropped at recovery."""
        spool = Spool(tmp_path / "spool")
        Claims(spool).claim([1, 2, 3])
        spool.close()
        claims = reopened(tmp_path / "spool")
        claims.keep_only({2})
        assert claims.suspects() == {2}

    def test_a_corrupt_record_counts_nothing(self, tmp_path: Path) -> None:
        """An unreadable claims value is ignored rather than stopping the gateway."""
        spool = Spool(tmp_path / "spool")
        spool.put_state("claims", b"{not json")
        assert Claims(spool).suspects() == set()
        spool.close()


class TestBadQueue:
    def test_move_to_bad_takes_the_message_out_of_the_spool(self, tmp_path: Path) -> None:
        """The message leaves the spool (recovery no longer sees it) but is kept as files."""
        spool = Spool(tmp_path / "spool")
        spool.put(Entry(mid=7, sender="a@b", recipients=[Recipient(0, "c@d")], received=1.0,
                        size=4), b"body")
        bad = spool.move_to_bad(7)
        assert spool.recover() == []
        spool.close()
        assert Spool(tmp_path / "spool").recover() == []
        assert (bad / "7.json").exists() and (bad / "7.eml").read_bytes() == b"body"
