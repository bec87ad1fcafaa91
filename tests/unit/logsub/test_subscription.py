"""The manager's subscription to a gateway's mail_logs over a real SSH link on 127.0.0.1.

The gateway's side is its real SSH command service answering `logs chunk`
from a logs directory the test writes and renames (a rollover by hand); the
manager's side is the real client, subscription and index. The
configuration is a small stand-in (a fake beside the real parts).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from pvoq.admin.registry import CommandMethod
from pvoq.config.model import Config, GatewayRecord, LogSubscriptionSettings
from pvoq.logsub.commands import LogChunkCommands, LogSubscriptionCommands
from pvoq.logsub.index import TrackingIndex
from pvoq.logsub.lines import line_time
from pvoq.logsub.subscriber import LogSubscription
from pvoq.logsub.wire import decode_chunk
from pvoq.maillog import MailLog
from pvoq.maillog.rollover import log_files
from pvoq.remote.client import SshClient
from pvoq.remote.service import CommandService
from pvoq.testing.localdeploy import free_port

GW = "gw1.example.test"
STAMP = "Mon Nov 30 12:00:{:02d} 2026"


class Commands(dict[str, CommandMethod]):
    def register(self, name: str, command: CommandMethod, *, peer: bool = False) -> None:
        self[name] = command


async def _pvo_listener(args: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"interface": "Incoming Mail", "address": "127.0.0.1", "port": 7026}}


class World:
    """A gateway's logs directory and SSH service, a manager's data directory."""

    def __init__(self, root: Path, *, chunk_lines: int = 7, chunk_bytes: int = 4096) -> None:
        self.root = root
        self.gw_logs = root / "gw" / "logs"
        self.gw_logs.mkdir(parents=True)
        self.port = free_port()
        self.manager_data = root / "mgr"
        self.manager_logs = self.manager_data / "logs"
        self.maillog = MailLog(self.manager_logs, appliance="manager", serial="S-2")
        self.gw_maillog = MailLog(root / "gw" / "own", appliance="gateway", serial="S-1")
        self.settings = LogSubscriptionSettings(interval_seconds=3600, chunk_lines=chunk_lines,
                                                chunk_bytes=chunk_bytes)
        self.config = cast(Config, SimpleNamespace(
            data_dir=self.manager_data, hostname="manager.example.test",
            logs_dir=self.manager_logs, log_subscription=self.settings,
            pvo=SimpleNamespace(gateways=(GatewayRecord(GW, "127.0.0.1"),))))
        self.service: CommandService | None = None
        self.written: list[str] = []
        self.n = 0

    def write(self, count: int) -> None:
        with open(self.gw_logs / "mail_logs", "a", encoding="utf-8") as f:
            for _ in range(count):
                line = f"{STAMP.format(self.n % 60)} Info: MID {self.n} queued for delivery"
                f.write(line + "\n")
                self.written.append(line)
                self.n += 1

    def roll(self, name: str) -> None:
        os.rename(self.gw_logs / "mail_logs", self.gw_logs / name)

    async def start_gateway(self) -> None:
        commands = Commands()
        LogChunkCommands(lambda: self.gw_logs).register(commands)
        commands.register("pvo.listener", _pvo_listener)   # what `gateway add` asks
        self.service = CommandService(data_dir=self.root / "gw", hostname=GW, host="127.0.0.1",
                                      port=self.port, maillog=self.gw_maillog,
                                      commands=commands)
        await self.service.start()

    async def stop_gateway(self) -> None:
        if self.service is not None:
            await self.service.stop()
            self.service = None

    def client(self) -> SshClient:
        return SshClient(self.manager_data, hostname="manager.example.test", timeout_s=10)

    async def enrol(self) -> None:
        assert self.service is not None
        await self.client().add(GW, "127.0.0.1", self.port, token=self.service.tokens.issue(60))

    def subscription(self) -> LogSubscription:
        return LogSubscription(config=lambda: self.config, ssh=self.client(),
                               maillog=self.maillog)

    def copy(self) -> list[str]:
        path = self.manager_data / "gateway_logs" / GW / "mail_logs"
        return path.read_text().splitlines()


async def _catch_up(sub: LogSubscription, *, rounds: int = 200) -> None:
    for _ in range(rounds):
        if not await sub.pull(GW):
            return
    raise AssertionError("the subscription never caught up")


def run(tmp_path: Path, body: Callable[[World], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        world = World(tmp_path, **kwargs)
        await world.start_gateway()
        try:
            await world.enrol()
            await body(world)
        finally:
            await world.stop_gateway()
    asyncio.run(main())


class TestExactlyOnce:
    def test_a_restart_in_the_middle_keeps_every_line_once(self, tmp_path: Path) -> None:
        async def body(world: World) -> None:
            world.write(30)
            sub = world.subscription()
            assert await sub.pull(GW) and await sub.pull(GW)   # two chunks of 7, more to come
            await sub.stop()
            world.write(10)
            again = world.subscription()
            again.recover()
            await _catch_up(again)
            assert world.copy() == world.written
            assert again.status()["gateways"][0]["lines"] == 40
            await again.stop()
        run(tmp_path, body)

    def test_a_crash_between_the_copy_and_the_index_pulls_those_lines_again(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        async def body(world: World) -> None:
            world.write(20)
            sub = world.subscription()
            await sub.pull(GW)

            def crash(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("crash before the commit")
            monkeypatch.setattr(sub.index, "add", crash)
            with pytest.raises(RuntimeError):
                await sub.pull(GW)
            assert len(world.copy()) == 14         # written, not indexed
            sub.index.close()
            again = world.subscription()
            again.recover()                         # the start of the next run
            assert world.copy() == world.written[:7]
            await _catch_up(again)
            assert world.copy() == world.written
            assert again.status()["gateways"][0]["lines"] == 20
            await again.stop()
        run(tmp_path, body)

    def test_rollovers_by_hand_lose_nothing(self, tmp_path: Path) -> None:
        async def body(world: World) -> None:
            sub = world.subscription()
            world.write(10)
            await sub.pull(GW)                       # 7 of the 10
            world.roll("mail_logs.@20261130T120000.s")
            world.write(5)
            world.roll("mail_logs.@20261130T120001.s")
            world.write(3)
            await _catch_up(sub)
            assert world.copy() == world.written
            world.write(2)
            await _catch_up(sub)
            assert world.copy() == world.written
            await sub.stop()
        run(tmp_path, body)


class TestKeptCopyRollover:
    """A kept copy past `max_file_size` rolls over, as a log does; no line is lost or kept
    twice, a crash between the rename and the index's record included."""

    @staticmethod
    def _all_kept(world: World) -> list[str]:
        copy = world.manager_data / "gateway_logs" / GW / "mail_logs"
        lines: list[str] = []
        for path in log_files(copy.parent, copy.name):
            lines += path.read_text().splitlines()
        return lines

    def test_the_copy_rolls_over_past_its_size_and_keeps_every_line_once(
            self, tmp_path: Path) -> None:
        async def body(world: World) -> None:
            world.settings = replace(world.settings, max_file_size=600)
            world.config = cast(Config, SimpleNamespace(**{
                **vars(world.config), "log_subscription": world.settings}))
            world.write(40)
            sub = world.subscription()
            await _catch_up(sub)
            copies = log_files(world.manager_data / "gateway_logs" / GW, "mail_logs")
            assert len(copies) >= 3                  # 40 lines of ~60 bytes, rolled at 600
            assert self._all_kept(world) == world.written
            assert "kept copy rolled over to mail_logs.@" in _own_log(world)
            await sub.stop()
        run(tmp_path, body)

    def test_a_crash_between_the_rename_and_the_index_completes_at_start(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        async def body(world: World) -> None:
            world.settings = replace(world.settings, max_file_size=300)
            world.config = cast(Config, SimpleNamespace(**{
                **vars(world.config), "log_subscription": world.settings}))
            world.write(20)
            sub = world.subscription()
            await sub.pull(GW)                       # 7 lines, past 300 bytes

            def crash(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("crash after the rename")
            monkeypatch.setattr(sub.index, "restart_copy", crash)
            with pytest.raises(RuntimeError):
                await sub.pull(GW)
            assert not (world.manager_data / "gateway_logs" / GW / "mail_logs").exists()
            sub.index.close()
            again = world.subscription()
            again.recover()                          # the start of the next run
            assert "rollover of its kept copy to mail_logs.@" in _own_log(world)
            await _catch_up(again)
            assert self._all_kept(world) == world.written
            assert again.status()["gateways"][0]["lines"] == 20
            await again.stop()
        run(tmp_path, body)

    def test_prune_forgets_old_messages_and_logs_what_it_removed(self, tmp_path: Path) -> None:
        async def body(world: World) -> None:
            world.write(5)                            # lines of Nov 30 2026
            sub = world.subscription()
            await _catch_up(sub)
            sub.prune(line_time("Mon Nov 30 12:00:00 2026") + 10 * 86400)  # 10 days later
            assert "removed: 0 messages" not in _own_log(world)
            with sub.index.reading() as db:
                assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 5
            sub.prune(line_time("Mon Nov 30 12:00:00 2026") + 31 * 86400)  # past 30 days
            assert "Log subscription: tracking data before " in _own_log(world)
            assert "removed: 5 messages, 0 connection lines, 0 rolled copies" in _own_log(world)
            with sub.index.reading() as db:
                assert db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
            await sub.stop()
        run(tmp_path, body)


def _own_log(world: World) -> str:
    world.maillog.flush()
    return (world.manager_logs / "mail_logs").read_text()


class TestIndexing:
    def test_lines_are_indexed_by_gateway_and_mid(self, tmp_path: Path) -> None:
        async def body(world: World) -> None:
            world.write(12)
            sub = world.subscription()
            await _catch_up(sub)
            index: TrackingIndex = sub.index
            with index.reading() as db:
                mids = [r[0] for r in db.execute(
                    "SELECT mid FROM messages m JOIN sources s ON s.id = m.src "
                    "WHERE s.name = ? ORDER BY mid", (GW,))]
            assert mids == list(range(12))
            await sub.stop()
        run(tmp_path, body)

    def test_the_managers_own_log_is_indexed_too(self, tmp_path: Path) -> None:
        async def body(world: World) -> None:
            world.maillog.info("Start MID 77 ICID 5")
            world.maillog.info('MID 77 Subject "on the manager"')
            sub = world.subscription()
            commands = Commands()
            LogSubscriptionCommands(sub).register(commands)
            await commands["logsub.pull"]({})
            found = await commands["track"]({"subject": "on the manager"})
            (journey,) = found["data"]["journeys"]
            assert journey["manager"][0]["mid"] == 77
            assert journey["manager"][0]["source"] == "manager.example.test"
            await sub.stop()
        run(tmp_path, body)


class TestFaults:
    def test_an_unreachable_gateway_is_recorded_logged_once_and_retried(
            self, tmp_path: Path) -> None:
        async def body(world: World) -> None:
            world.write(3)
            sub = world.subscription()
            await world.stop_gateway()
            assert not await sub.pull(GW) and not await sub.pull(GW)
            (row,) = sub.status()["gateways"]
            assert row["name"] == GW and row["host"] == "127.0.0.1"
            assert row["last_error"] == "connection refused" and row["failing"]
            assert isinstance(row["last_error_time"], float) and row["last_pull"] is None
            world.maillog.flush()
            text = (world.manager_logs / "mail_logs").read_text()
            fault = (f"Critical: An application fault occurred: ('log subscription of {GW} "
                     "failed: connection refused')")
            assert text.count(fault) == 1
            await world.start_gateway()
            await _catch_up(sub)
            assert world.copy() == world.written
            (row,) = sub.status()["gateways"]
            assert not row["failing"] and row["lines"] == 3 and row["last_pull"] is not None
            world.maillog.flush()
            assert f"Log subscription of {GW}: pull succeeded, application fault cleared" in \
                (world.manager_logs / "mail_logs").read_text()
            await sub.stop()
        run(tmp_path, body)

    def test_a_gateway_not_added_over_ssh_is_reported(self, tmp_path: Path) -> None:
        async def body(world: World) -> None:
            world.config = cast(Config, SimpleNamespace(
                **{**vars(world.config), "pvo": SimpleNamespace(
                    gateways=(GatewayRecord(GW, "127.0.0.1"),
                              GatewayRecord("gw2.example.test", "127.0.0.2")))}))
            sub = world.subscription()
            await sub.pull_all()
            rows = {r["name"]: r for r in sub.status()["gateways"]}
            assert "gateway add" in rows["gw2.example.test"]["last_error"]
            assert rows[GW]["last_error"] is None
            await sub.stop()
        run(tmp_path, body)


    def test_a_gateway_added_later_clears_no_fault_that_was_never_logged(
            self, tmp_path: Path) -> None:
        async def body(world: World) -> None:
            world.write(2)
            sub = world.subscription()
            # not added yet: recorded as failing, silently (it is no fault of the gateway)
            sub._failed(GW, "not reachable over SSH: add it", log=False)
            await _catch_up(sub)
            world.maillog.flush()
            text = (world.manager_logs / "mail_logs").read_text()
            assert "application fault" not in text
            assert not sub.status()["gateways"][0]["failing"]
            await sub.stop()
        run(tmp_path, body)


@pytest.mark.parametrize(("answer", "problem"), [
    ("nonsense", "not JSON"),
    ("[]", "not a JSON object"),
    ('{"segments": 3}', "segments is not a list"),
    ('{"segments": [{"data": "@@"}]}', "not base64"),
    ('{"segments": [{"data": "YWJj"}]}', "whole line"),
    ('{"segments": [], "position": {"inode": -1, "offset": 0, "head": ""}}', "inode"),
    ('{"segments": [], "position": {"inode": 1, "offset": 0, "head": "../x"}}', "head"),
    ('{"segments": [{"data": "' + "YWEK" * 20 + '", "inode": 1, "offset": 40, "start": 0, '
     '"head": "ab"}], "position": {"inode": 1, "offset": 40, "head": "ab"}}', "more than"),
])
def test_a_malformed_answer_is_refused_naming_what_is_wrong(answer: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_chunk(answer, max_bytes=4096, max_lines=10)


def test_pull_now_is_refused_while_the_subscription_is_disabled(tmp_path: Path) -> None:
    from pvoq.admin.protocol import CommandError

    async def body(world: World) -> None:
        world.config = cast(Config, SimpleNamespace(**{
            **vars(world.config), "log_subscription": LogSubscriptionSettings(enabled=False)}))
        sub = world.subscription()
        commands = Commands()
        LogSubscriptionCommands(sub).register(commands)
        with pytest.raises(CommandError, match="disabled"):
            await commands["logsub.pull"]({})
        assert (await commands["logsub.status"]({}))["data"]["enabled"] is False
        await sub.stop()
    run(tmp_path, body)
