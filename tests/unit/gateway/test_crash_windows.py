"""Work the gateway does twice after a crash makes the same messages, not more of them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pvoq.config.loader import load_config
from pvoq.config.template import ApplianceSpec
from pvoq.deploy import init_appliance
from pvoq.gateway import Gateway
from pvoq.scan.verdict import ScanResult, Verdict
from pvoq.spool.store import Entry, Recipient

BODY = b"From: a@sender.example\r\nSubject: two policies\r\n\r\nhello\r\n"


class Crash(Exception):
    """Stands for the process dying at this point."""


@pytest.fixture
def gateway(tmp_path: Path):  # noqa: ANN201
    path = init_appliance(tmp_path / "gw", ApplianceSpec(role="gateway", hostname="gw.test",
                                                        serial="SN"), ca_dir=tmp_path / "ca")
    gw = Gateway(load_config(path))
    yield gw
    gw.maillog.close()


def spooled_mids(gw: Gateway) -> set[int]:
    return set(gw.spool.mids())


def incoming(gw: Gateway) -> Entry:
    entry = Entry(mid=gw.ids.next("mid"), sender="a@sender.example",
                  recipients=[Recipient(0, "x@one.example"), Recipient(1, "y@two.example")],
                  received=1.0, size=len(BODY))
    gw.spool.put(entry, BODY)
    return entry


class TestCrashWindows:
    def test_a_split_interrupted_before_the_original_goes_is_not_made_twice(
            self, gateway: Gateway) -> None:
        """Re-splitting after a crash reuses the planned MIDs: two parts, never four."""
        entry = incoming(gateway)
        groups = {"A": [entry.recipients[0]], "B": [entry.recipients[1]]}

        async def crash(mid: int) -> None:
            raise Crash()

        async def scenario() -> tuple[set[int], set[int], set[int]]:
            real_remove = gateway.spool.remove_async
            gateway.spool.remove_async = crash  # type: ignore[method-assign]
            with pytest.raises(Crash):
                await gateway._split(entry, groups, ScanResult(), BODY)
            gateway.spool.remove_async = real_remove  # type: ignore[method-assign]
            after_crash = gateway.spool.get(entry.mid)
            planned = set(after_crash.meta["plans"]["split"].values())
            before = spooled_mids(gateway)
            regroup = {"A": [after_crash.recipients[0]], "B": [after_crash.recipients[1]]}
            await gateway._split(after_crash, regroup, ScanResult(), BODY)
            return planned, before, spooled_mids(gateway)

        planned, before, after = asyncio.run(scenario())
        assert len(planned) == 2
        assert before == {entry.mid} | planned
        assert after == planned

    def test_a_duplicate_quarantine_copy_is_made_once(self, gateway: Gateway) -> None:
        """Asking twice for the same copy (a crash in between) leaves one copy."""
        entry = incoming(gateway)
        verdict = Verdict("message_filters", "Policy", "message filter:copy_it")

        async def twice() -> None:
            await gateway._duplicate(entry, verdict, BODY)
            again = gateway.spool.get(entry.mid)
            await gateway._duplicate(again, verdict, BODY)

        asyncio.run(twice())
        assert len(spooled_mids(gateway) - {entry.mid}) == 1
