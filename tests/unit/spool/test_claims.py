"""Poison-message claims: counts survive a crash, three strikes move a message to bad/."""

from __future__ import annotations

from pathlib import Path

from pvoq.spool.claims import MAX_ATTEMPTS, Claims, move_to_bad
from pvoq.spool.store import Entry, Recipient, Spool


class TestClaims:
    def test_counts_grow_across_restarts_until_cleared(self, tmp_path: Path) -> None:
        """A MID claimed again after a restart has its count raised; waiting suspects keep theirs."""
        path = tmp_path / "claims.json"
        Claims(path).claim([1, 2])
        after_crash = Claims(path)
        assert after_crash.suspects() == {1, 2}
        after_crash.claim([1])
        again = Claims(path)
        assert again.attempts(1) == 2 and again.attempts(2) == 1
        again.claim([1])
        assert Claims(path).attempts(1) == MAX_ATTEMPTS

    def test_a_processed_message_is_forgotten_at_the_next_claim(self, tmp_path: Path) -> None:
        """done() drops a message's count; the next claim no longer lists it."""
        path = tmp_path / "claims.json"
        claims = Claims(path)
        claims.claim([1, 2])
        claims.done([1, 2])
        claims.claim([3])
        assert Claims(path).suspects() == {3}

    def test_keep_only_forgets_messages_no_longer_waiting(self, tmp_path: Path) -> None:
        """Counts of messages that finished before the crash are dropped at recovery."""
        path = tmp_path / "claims.json"
        Claims(path).claim([1, 2, 3])
        claims = Claims(path)
        claims.keep_only({2})
        assert claims.suspects() == {2}

    def test_a_corrupt_file_counts_nothing(self, tmp_path: Path) -> None:
        """An unreadable claims file is ignored rather than stopping the gateway."""
        path = tmp_path / "claims.json"
        path.write_text("{not json")
        assert Claims(path).suspects() == set()


class TestBadQueue:
    def test_move_to_bad_takes_both_files_out_of_the_spool(self, tmp_path: Path) -> None:
        """The entry and its body leave the spool (recovery no longer sees them) but are kept."""
        spool = Spool(tmp_path / "spool")
        spool.put(Entry(mid=7, sender="a@b", recipients=[Recipient(0, "c@d")], received=1.0,
                        size=4), b"body")
        bad = move_to_bad(spool.dir, 7)
        assert spool.recover() == []
        assert (bad / "7.json").exists() and (bad / "7.eml").read_bytes() == b"body"
