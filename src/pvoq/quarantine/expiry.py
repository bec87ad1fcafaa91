"""The expiry loop of a quarantine service (the manager's, or a gateway's local one).

At each scheduled exit the default action applies; the loop expires a batch
at a time, yields to the event loop between batches, then sleeps until the
next interval or an early wake (a reload, a delay that moved an exit).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


async def expiry_loop(expire: Callable[[], int], wake: asyncio.Event,
                      interval_s: Callable[[], float], warn: Callable[[str], None],
                      what: str = "Quarantine expiry",
                      after: Callable[[], object] | None = None) -> None:
    """Run *expire* (one batch; how many it settled) until it finds nothing, then *after*
    (upkeep, once a pass), then wait *interval_s()* seconds or for *wake*; a failure is
    logged through *warn* and retried."""
    while True:
        try:
            while expire() > 0:
                await asyncio.sleep(0)
            if after is not None:
                after()
        except Exception as exc:  # a database hiccup must not end expiry for good
            warn(f"{what} failed, will retry: {exc}")
        wake.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), interval_s())
