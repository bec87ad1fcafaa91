"""Fixtures every test directory may use, and the one Hypothesis settings profile.

Hypothesis (the fuzzing tests, `test_fuzz_*.py`) runs under the profile
`pvoq`, registered and loaded here and nowhere else: derandomized (the same
examples on every run, so `make test` has a fixed budget and a failure
reproduces), no example database, a fixed number of examples (100) and a
deadline of 10 s per example: generous, so that a loaded machine does not
fail it, while a hang or a quadratic blow-up on the bounded inputs the
tests generate still does. A test may lower or raise `max_examples` with
its own `@settings(...)`, which inherits the rest from this profile (a
test's own `suppress_health_check` replaces the profile's list).
`PVOQ_HYPOTHESIS_PROFILE=pvoq-long` runs the same tests randomized, ten
times longer, to look for new failures (add each one as an `@example`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from pvoq.testing.pgserver import PostgresServer

settings.register_profile(
    "pvoq", derandomize=True, database=None, max_examples=100, deadline=10_000,
    print_blob=False, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile(
    "pvoq-long", parent=settings.get_profile("pvoq"), derandomize=False, max_examples=1000,
    print_blob=True)
settings.load_profile(os.environ.get("PVOQ_HYPOTHESIS_PROFILE", "pvoq"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the whole session (the tests fail, never skip, without one)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def umask_000() -> Iterator[None]:
    """The process umask 000 for one test (what pvoq must hold its modes against)."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# The longest test files (end-to-end, minutes each on a loaded 2-core machine), started
# first: with `make test`'s workers (pytest-xdist, one file per worker at a time, in
# collection order: `--dist loadfile --no-loadscope-reorder`) a long file started last
# would keep one worker busy after the others are done. A scheduling hint only: the
# order of the tests inside a file is kept, and a file not listed runs after these.
SLOW_FIRST = (
    "test_crash_recovery.py", "test_manager_group_commit.py", "test_log_rotation.py",
    "test_console_users_cli.py", "test_doctor_faults.py", "test_operator_commands.py",
    "test_quarantine_cli.py", "test_console_gateway.py", "test_console_doctor.py",
    "test_doctor_healthy.py", "test_console_admin.py", "test_console_login.py",
    "test_several_managers.py", "test_poison_and_workqueue.py", "test_doctor_logsub.py",
    "test_log_subscription.py", "test_console_rescan.py", "test_doctor_skew.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow files first (`SLOW_FIRST`), then the other end-to-end files, then the rest."""
    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        slow = SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)
        return slow, 0 if "e2e" in item.path.parts else 1

    items.sort(key=rank)
