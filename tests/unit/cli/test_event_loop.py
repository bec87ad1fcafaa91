"""Which event loop an appliance runs on: uvloop's by default, the standard
library's when PVOQ_EVENT_LOOP=asyncio asks for it."""
from __future__ import annotations

import asyncio

import pytest
import uvloop

from pvoq.cli.main import _run_loop


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
