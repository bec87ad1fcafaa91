"""The shared expiry loop: batches until none is left, survives a failing batch, wakes early."""

from __future__ import annotations

import asyncio

from pvoq.quarantine.expiry import expiry_loop
from pvoq.quarantine.settings import EarlyRelease, QuarantineSettings, early_release_options


async def turns(n: int = 50) -> None:
    """Let the loop under test run *n* turns of the event loop."""
    for _ in range(n):
        await asyncio.sleep(0)


def test_batches_until_empty_a_failure_is_warned_and_retried_and_a_wake_comes_early() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        calls: list[str] = []
        warnings: list[str] = []
        outcomes: list[int | Exception] = [3, 2, 0, RuntimeError("database is locked"), 1, 0]

        def expire() -> int:
            outcome = outcomes.pop(0) if outcomes else 0
            calls.append(repr(outcome))
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        wake = asyncio.Event()
        task = asyncio.ensure_future(expiry_loop(expire, wake, lambda: 3600.0, warnings.append,
                                                 "Local quarantine expiry"))
        await turns()
        assert calls == ["3", "2", "0"]  # until nothing is left, then the long wait
        wake.set()  # the failing batch: warned, and the loop goes on waiting
        await turns()
        wake.set()
        await turns()
        task.cancel()
        return calls, warnings

    calls, warnings = asyncio.run(scenario())
    assert calls == ["3", "2", "0", "RuntimeError('database is locked')", "1", "0"]
    assert warnings == ["Local quarantine expiry failed, will retry: database is locked"]


def test_the_upkeep_runs_once_a_pass_after_the_batches() -> None:
    """The manager's search dictionary pruning: one chunk after each pass's batches."""
    async def scenario() -> list[str]:
        calls: list[str] = []
        outcomes = [2, 0, 0]

        def expire() -> int:
            calls.append(f"expire {outcomes[0]}")
            return outcomes.pop(0) if len(outcomes) > 1 else 0

        wake = asyncio.Event()
        task = asyncio.ensure_future(expiry_loop(expire, wake, lambda: 3600.0, lambda w: None,
                                                 after=lambda: calls.append("upkeep")))
        await turns()
        wake.set()
        await turns()
        task.cancel()
        return calls

    assert asyncio.run(scenario()) == ["expire 2", "expire 0", "upkeep", "expire 0", "upkeep"]


def test_early_release_options_only_of_release_by_default_quarantines() -> None:
    tag = EarlyRelease(subject_tag="[early]")
    settings = {
        "Policy": QuarantineSettings(name="Policy", default_action="release", early_release=tag),
        "Virus": QuarantineSettings(name="Virus", default_action="delete", early_release=tag),
        "Plain": QuarantineSettings(name="Plain", default_action="release"),
    }
    assert early_release_options(settings, ["Virus", "Policy", "Plain", "Unknown"]) == [tag]
