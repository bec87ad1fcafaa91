"""Tests for pvoq.delivery.backoff: the pure retry back-off rule."""

from __future__ import annotations

from itertools import pairwise

import pytest

from pvoq.delivery.backoff import retry_delay

MIN_S = 60.0
MAX_S = 3600.0


def delay(attempts: int) -> float:
    return retry_delay(attempts, min_s=MIN_S, max_s=MAX_S)


class TestRetryDelay:
    def test_first_failure_waits_minimum(self) -> None:
        """The first failure waits the minimum interval."""
        assert delay(1) == MIN_S

    def test_doubles_each_attempt(self) -> None:
        """Each further failure doubles the wait while under the maximum."""
        waits = [delay(n) for n in range(1, 6)]
        assert all(b == 2 * a for a, b in pairwise(waits))
        assert waits[-1] < MAX_S

    def test_clamped_to_maximum(self) -> None:
        """The wait never exceeds the maximum, and reaches it."""
        waits = [delay(n) for n in range(1, 30)]
        assert max(waits) == MAX_S
        assert waits == sorted(waits)

    @pytest.mark.parametrize("attempts", [0, -1, -100])
    def test_no_wait_before_first_failure(self, attempts: int) -> None:
        """Fewer than one attempt means no delay."""
        assert delay(attempts) == 0.0

    @pytest.mark.parametrize("attempts", [63, 64, 1_000, 10**9, 2**63])
    def test_huge_attempt_counts(self, attempts: int) -> None:
        """Huge attempt counts give the maximum, without overflow."""
        assert delay(attempts) == MAX_S
