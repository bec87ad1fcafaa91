"""Retry back-off: a pure rule, like Postfix's (double each time, clamp to min/max)."""

from __future__ import annotations


def retry_delay(attempts: int, *, min_s: float, max_s: float) -> float:
    """Seconds to wait after the *attempts*-th failed attempt (1 = the first failure)."""
    if attempts < 1:
        return 0.0
    exponent = min(attempts - 1, 62)  # 2**62 * anything is past any max already
    return max(min_s, min(max_s, min_s * (2 ** exponent)))
