"""The fixed budget of the configuration fuzz tests (`test_fuzz_*.py` in this directory).

Each property runs a fixed number of examples, derandomized so that a run in
CI is the same as a run at a desk, with a deadline per example that bounds
the time one input may take (generous: two CPUs are shared). Inputs are
bounded in size by their strategies, which bounds memory per input.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings

DEADLINE = timedelta(seconds=5)


def budget(max_examples: int) -> settings:
    """Settings for one property: *max_examples*, derandomized, no example database."""
    return settings(max_examples=max_examples, derandomize=True, deadline=DEADLINE,
                    database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])
