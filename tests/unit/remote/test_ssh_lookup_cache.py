"""The manager's cache of gateway listener addresses, with a scripted SSH client."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest

from pvoq.maillog import MailLog
from pvoq.remote.client import ListenerAnswer, SshClient, parse_listener_answer
from pvoq.remote.keys import SshFault
from pvoq.remote.lookup import GatewayLocator, fault_line


class ScriptedClient:
    """Answers `listener()` from a list: an answer or an `SshFault` per call."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls = 0
        self.pins = self

    def get(self, name: str) -> object | None:
        return object() if name.lower() == "gw1" else None

    async def listener(self, name: str) -> ListenerAnswer:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, SshFault):
            raise answer
        return cast(ListenerAnswer, answer)


class Harness:
    def __init__(self, tmp_path: Path, answers: list[Any]) -> None:
        self.client = ScriptedClient(answers)
        self.log = MailLog(tmp_path, appliance="manager m", serial="S")
        self.wakes = 0
        self.locator = GatewayLocator(cast(SshClient, self.client), self.log, self._wake)
        self.path = tmp_path / "mail_logs"

    def _wake(self) -> None:
        self.wakes += 1

    async def settle(self) -> None:
        for task in list(self.locator._tasks.values()):
            await task

    def lines(self) -> list[str]:
        self.log.flush()
        return self.path.read_text().splitlines()


def _at(port: int) -> ListenerAnswer:
    return ListenerAnswer("Incoming Mail", "127.0.0.1", port)


class TestCache:
    def test_a_miss_defers_and_starts_one_lookup(self, tmp_path: Path) -> None:
        """The first ask answers None, looks up once, then answers from the cache."""
        async def body() -> None:
            h = Harness(tmp_path, [_at(7026)])
            assert h.locator.address("gw1") is None
            assert h.locator.address("gw1") is None  # the lookup already runs
            await h.settle()
            assert h.locator.address("gw1") == ("127.0.0.1", 7026)
            assert h.client.calls == 1
            assert h.wakes == 1
        asyncio.run(body())

    def test_a_failed_delivery_asks_again_and_a_new_port_wakes_the_queue(
            self, tmp_path: Path) -> None:
        """Invalidating the cached address looks up again; only a changed answer wakes."""
        async def body() -> None:
            h = Harness(tmp_path, [_at(7026), _at(7026), _at(7100)])
            h.locator.address("gw1")
            await h.settle()
            h.locator.invalidate_address("127.0.0.1", 7026)
            await h.settle()
            assert h.wakes == 1  # same answer: the queue's back-off stands
            h.locator.invalidate_address("127.0.0.1", 7026)
            await h.settle()
            assert h.locator.address("gw1") == ("127.0.0.1", 7100)
            assert h.wakes == 2
        asyncio.run(body())

    def test_another_address_failing_keeps_the_cache(self, tmp_path: Path) -> None:
        """A failure at an address nobody is cached at changes nothing."""
        async def body() -> None:
            h = Harness(tmp_path, [_at(7026)])
            h.locator.address("gw1")
            await h.settle()
            h.locator.invalidate_address("127.0.0.1", 9999)
            assert h.locator.address("gw1") == ("127.0.0.1", 7026)
        asyncio.run(body())


    def test_cached_answers_from_the_cache_and_starts_no_lookup(self, tmp_path: Path) -> None:
        """`cached` (what `gateway list` shows) only reads: a miss is None and asks nobody."""
        async def body() -> None:
            h = Harness(tmp_path, [_at(7026)])
            assert h.locator.cached("gw1") is None
            await h.settle()
            assert h.client.calls == 0
            h.locator.address("gw1")
            await h.settle()
            assert h.locator.cached("GW1") == ("127.0.0.1", 7026)
            assert h.client.calls == 1
        asyncio.run(body())


class TestFaults:
    def test_a_failure_is_an_application_fault_until_a_lookup_succeeds(
            self, tmp_path: Path) -> None:
        """The fault line names gateway and cause; the next success logs it cleared."""
        async def body() -> None:
            h = Harness(tmp_path, [SshFault("connection refused"), _at(7026)])
            assert h.locator.address("gw1") is None
            await h.settle()
            assert h.locator.fault("gw1") == "connection refused"
            assert h.wakes == 0
            assert h.lines()[-1].endswith(
                "Critical: An application fault occurred: ('ssh lookup of gw1 failed: "
                "connection refused')")
            assert h.locator.address("gw1") is None
            await h.settle()
            assert h.locator.fault("gw1") is None
            assert h.lines()[-1].endswith("Info: SSH lookup of gw1 succeeded: application "
                                          "fault cleared")
            assert h.wakes == 1
        asyncio.run(body())

    def test_fault_line_keeps_quotes_balanced(self) -> None:
        """A cause with single quotes cannot break the AsyncOS tuple form."""
        assert fault_line("gw1", "command 'x' failed") == (
            "An application fault occurred: ('ssh lookup of gw1 failed: "
            "command \"x\" failed')")


class TestAnswer:
    def test_the_gateway_answer_is_parsed(self) -> None:
        """The JSON of `pvo listener` gives interface, address and port."""
        answer = parse_listener_answer('{"interface": "Data 1", "address": "10.0.0.2", '
                                       '"port": 7026, "hostname": "gw1"}')
        assert answer == ListenerAnswer("Data 1", "10.0.0.2", 7026)

    def test_a_malformed_answer_is_a_fault(self) -> None:
        """Anything but that JSON is an SSH fault naming the answer."""
        with pytest.raises(SshFault, match="malformed answer to 'pvo listener'"):
            parse_listener_answer("Welcome!")
