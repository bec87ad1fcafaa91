"""Which event loop an appliance runs on: uvloop's by default, the standard
library's when PVOQ_EVENT_LOOP=asyncio asks for it; and how often its threads
hand the GIL over."""
from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest
import uvloop

from pvoq.cli.main import GIL_SWITCH_INTERVAL_S, _run_loop


@pytest.fixture(autouse=True)
def _switch_interval() -> Iterator[None]:
    """`_run_loop` sets the interpreter's switch interval: put the test process's back."""
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def _loop_seen() -> asyncio.AbstractEventLoop:
    seen: list[asyncio.AbstractEventLoop] = []

    async def probe() -> None:
        seen.append(asyncio.get_running_loop())

    _run_loop(probe())
    return seen[0]


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PVOQ_EVENT_LOOP", raising=False)
    assert isinstance(_loop_seen(), uvloop.Loop)


def test_standard_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PVOQ_EVENT_LOOP", "asyncio")
    loop = _loop_seen()
    assert not isinstance(loop, uvloop.Loop)
    assert isinstance(loop, asyncio.BaseEventLoop)


def test_the_loop_runs_with_the_short_gil_switch_interval() -> None:
    """The event loop's thread gets the GIL back within half a millisecond of asking
    (CPython's default interval is ten times that)."""
    seen: list[float] = []

    async def probe() -> None:
        seen.append(sys.getswitchinterval())

    sys.setswitchinterval(0.005)
    _run_loop(probe())
    assert seen == [pytest.approx(GIL_SWITCH_INTERVAL_S)]
    assert GIL_SWITCH_INTERVAL_S < 0.005
