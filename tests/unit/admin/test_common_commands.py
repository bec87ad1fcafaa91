"""The operator commands both roles answer, wired as the appliance wires them.

Real `DeliveryQueues` over a real `Spool`, a real `ListenerSet` binding on
127.0.0.1, and a real `AdminServer` on a unix socket: each command is sent
as `pvoq cli` sends it, and its reply (text, data, error and exit code) is
what the CLI renders.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pvoq.admin.protocol import AdminServer, CommandError, call
from pvoq.commands import (
    COUNTERS,
    ListenerCommands,
    QueueCommands,
    ReloadCommands,
    StatusCommands,
    SuspendCommands,
)
from pvoq.config.loader import load_config
from pvoq.config.model import Config, Listener
from pvoq.config.template import ApplianceSpec
from pvoq.counters import Counters
from pvoq.delivery.queue import DeliveryQueues, Destination
from pvoq.deploy import init_appliance
from pvoq.listeners import ListenerSet
from pvoq.maillog import MailLog
from pvoq.smtp.server import ConnectionGate, PvoqSMTP
from pvoq.spool.store import QUEUED, Entry, Recipient, Spool

COMMON = {"status", "tophosts", "hoststatus", "showrecipients", "deleterecipients",
          "suspendlisteners", "resumelisteners", "suspend", "resume", "suspenddel",
          "resumedel", "delivernow", "rate", "resetcounters", "reload"}
RECEIVED = 1_700_000_000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def no_connection_expected() -> PvoqSMTP:
    raise AssertionError("no SMTP session is opened in these tests")


class Appliance:
    """The common command sets over their real collaborators, as `Appliance` wires them."""

    def __init__(self, root: Path, sock: Path) -> None:
        path = init_appliance(root / "gw", ApplianceSpec(
            role="gateway", hostname="gw.test", serial="SN", smtp_port=free_port(),
            cpq_port=free_port()), ca_dir=root / "ca")
        self.config: Config = load_config(path)
        self.maillog = MailLog(root / "logs", appliance="gateway gw.test", serial="SN")
        self.spool = Spool(root / "spool")
        self.counters = Counters(root / "counters.json")
        self.queues = DeliveryQueues(spool=self.spool, maillog=self.maillog,
                                     destination_for=self.nowhere, retry_min_s=60,
                                     retry_max_s=3600, counters=self.counters)
        self.bound: list[str] = []
        self.listeners = ListenerSet(lambda: self.config, self.maillog, self.sessions)
        self.admin = AdminServer(sock, before_reply=self.maillog.flush)
        self.reloads: list[str] = []
        self.reload_error: str | None = None
        queue_commands = QueueCommands(self.queues, self.maillog)
        listener_commands = ListenerCommands(self.listeners)
        self.registered: list[str] = []
        for commands in (queue_commands, listener_commands,
                         SuspendCommands(listener_commands, queue_commands),
                         StatusCommands(role="gateway", started=RECEIVED - 60,
                                        config=lambda: self.config, queues=self.queues,
                                        counters=self.counters, listeners=self.listeners,
                                        gauges=lambda: {"messages_in_work_queue": 7}),
                         ReloadCommands(self.reload)):
            self.registered += commands.register(self.admin)

    def nowhere(self, host: str) -> Destination:
        raise AssertionError("the workers are not started in these tests")

    def sessions(self, listener: Listener, gate: ConnectionGate) -> Callable[[], PvoqSMTP]:
        self.bound.append(listener.name)
        return no_connection_expected

    async def reload(self) -> str:
        if self.reload_error is not None:
            raise CommandError(self.reload_error)
        self.reloads.append("reloaded")
        return "Configuration reloaded from here."

    def queue(self, mid: int, sender: str, *hosts: str, subject: str = "hi",
              received: float = RECEIVED) -> Entry:
        entry = Entry(mid=mid, sender=sender, received=received + mid, size=100 * mid,
                      state=QUEUED, meta={"subject": subject},
                      recipients=[Recipient(rid, f"r{rid}@{host}", host=host)
                                  for rid, host in enumerate(hosts)])
        self.spool.put(entry, b"Subject: hi\r\n\r\nbody\r\n")
        self.queues.add(entry)
        return entry

    def log_lines(self) -> list[str]:
        self.maillog.flush()
        return self.maillog.path.read_text().splitlines()

    async def cli(self, command: str, **args: Any) -> dict[str, Any]:
        """One command over the admin socket, as `pvoq cli` sends it."""
        return await asyncio.to_thread(call, self.admin.path, command, args)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # A unix socket path must stay short: pytest's tmp_path can be too long.
    path = Path(tempfile.mkdtemp(prefix="pvoq-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(tmp_path: Path, sock_dir: Path,
        body: Callable[[Appliance], Awaitable[None]]) -> None:
    async def main() -> None:
        app = Appliance(tmp_path, sock_dir / "admin.sock")
        await app.admin.start()
        try:
            await body(app)
        finally:
            await app.admin.stop()
            await app.listeners.close()
            app.spool.close()
            app.maillog.close()
    asyncio.run(main())


class TestRegistry:
    def test_the_common_sets_register_the_fifteen_common_commands(
            self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            assert sorted(app.registered) == sorted(COMMON)
            assert set(app.admin.commands) == COMMON
        run(tmp_path, sock_dir, body)

    def test_registering_a_set_twice_is_refused(self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            with pytest.raises(ValueError, match="'tophosts' registered twice"):
                QueueCommands(app.queues, app.maillog).register(app.admin)
        run(tmp_path, sock_dir, body)

    def test_the_command_module_does_not_import_the_appliance(self) -> None:
        code = "import sys, pvoq.commands; print(json.dumps(sorted(sys.modules)))"
        out = subprocess.run([sys.executable, "-c", "import json; " + code],
                             capture_output=True, text=True, check=True).stdout
        assert "pvoq.appliance" not in json.loads(out)

    def test_an_unknown_command_is_exit_2(self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            assert await app.cli("nosuch") == {"ok": False, "error": "Unknown command: nosuch",
                                               "exit": 2}
        run(tmp_path, sock_dir, body)


class TestQueueCommands:
    def test_showrecipients_all_host_and_sender(self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            app.queue(1, "alice@a.test", "b.test", "c.test", subject="one")
            app.queue(2, "Bob@a.test", "c.test")
            everything = await app.cli("showrecipients")
            assert everything["ok"] and everything["data"]["selection"] == "all"
            assert everything["data"]["total"] == 2
            first = everything["data"]["messages"][0]
            assert first == {"mid": 1, "size": 100, "sender": "alice@a.test", "subject": "one",
                             "received": RECEIVED + 1,
                             "recipients": [
                                 {"rid": 0, "attempts": 0, "address": "r0@b.test",
                                  "host": "b.test", "last_error": ""},
                                 {"rid": 1, "attempts": 0, "address": "r1@c.test",
                                  "host": "c.test", "last_error": ""}]}
            by_host = (await app.cli("showrecipients", by="host", value="c.test"))["data"]
            assert by_host["selection"] == "host c.test"
            assert [(m["mid"], [r["rid"] for r in m["recipients"]])
                    for m in by_host["messages"]] == [(1, [1]), (2, [0])]
            by_sender = (await app.cli("showrecipients", by="sender", value="bob@A.test"))
            assert by_sender["data"]["selection"] == "sender bob@A.test"
            assert [m["mid"] for m in by_sender["data"]["messages"]] == [2]
            limited = (await app.cli("showrecipients", limit=1))["data"]
            assert limited["total"] == 2 and len(limited["messages"]) == 1
        run(tmp_path, sock_dir, body)

    def test_selection_errors(self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            app.queue(1, "alice@a.test", "b.test")
            for args, error in (({"by": "host", "value": "nowhere.test"},
                                 "No record of that host."),
                                ({"by": "host"}, "Missing value for host."),
                                ({"by": "sender", "value": "  "}, "Missing value for sender."),
                                ({"by": "size", "value": "1"},
                                 "Unknown selection: size (host, sender or all)")):
                for command in ("showrecipients", "deleterecipients"):
                    assert await app.cli(command, **args) == {"ok": False, "error": error,
                                                              "exit": 1}
        run(tmp_path, sock_dir, body)

    def test_deleterecipients_deletes_logs_and_counts(self, tmp_path: Path,
                                                      sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            app.queue(1, "alice@a.test", "b.test")
            app.queue(2, "alice@a.test", "b.test")
            app.queue(3, "carol@a.test", "c.test")
            reply = await app.cli("deleterecipients", by="host", value="b.test", limit=1)
            assert reply == {"ok": True, "text": "1 messages deleted.", "data": {"deleted": 1}}
            assert any(line.endswith("deleterecipients (host b.test): 1 messages deleted")
                       for line in app.log_lines())
            assert (await app.cli("deleterecipients", by="sender", value="carol@a.test")
                    )["data"] == {"deleted": 1}
            assert app.counters.row("deleted_recipients")[0] == 2
            left = (await app.cli("showrecipients"))["data"]["messages"]
            assert [m["mid"] for m in left] == [2]
            assert await app.cli("deleterecipients", by="sender", value="nobody@x.test") == {
                "ok": True, "text": "No messages deleted.", "data": {"deleted": 0}}
        run(tmp_path, sock_dir, body)

    def test_tophosts_sorts_and_refuses_an_unknown_order(self, tmp_path: Path,
                                                         sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            app.queue(1, "alice@a.test", "b.test")
            app.queue(2, "alice@a.test", "c.test", "c.test")
            app.queues.hosts["b.test"].stats.delivered = 5
            rows = (await app.cli("tophosts"))["data"]["hosts"]
            assert [(r["host"], r["active_rcpts"]) for r in rows] == [("c.test", 2),
                                                                      ("b.test", 1)]
            assert set(rows[0]) == {"host", "down", "active_rcpts", "conn_out", "deliv_rcpts",
                                    "soft_bounces", "hard_bounces"}
            by_delivered = (await app.cli("tophosts", sort="deliv_rcpts"))["data"]["hosts"]
            assert [r["host"] for r in by_delivered] == ["b.test", "c.test"]
            assert await app.cli("tophosts", sort="size") == {
                "ok": False, "error": "Unknown sort order: size", "exit": 1}
        run(tmp_path, sock_dir, body)

    def test_hoststatus(self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            app.queue(1, "alice@a.test", "b.test", "b.test")
            app.queues.entries[1].recipients[1].attempts = 2
            data = (await app.cli("hoststatus", host=" b.test "))["data"]
            assert data["host"] == "b.test"
            assert (data["active_recipients"], data["unattempted_recipients"],
                    data["attempted_recipients"]) == (2, 1, 1)
            assert data["oldest_message"] == RECEIVED + 1
            assert data["last_activity"] is None and data["delivery_suspended"] is False
            assert await app.cli("hoststatus", host="x.test") == {
                "ok": False, "error": "No record of host: x.test", "exit": 1}
        run(tmp_path, sock_dir, body)

    def test_delivernow_clears_the_back_off(self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            app.queue(1, "alice@a.test", "b.test")
            app.queues.entries[1].recipients[0].next_attempt = RECEIVED + 9999
            assert (await app.cli("delivernow", host="b.test"))["text"] == \
                "Delivery rescheduled for b.test."
            assert app.queues.entries[1].recipients[0].next_attempt == 0.0
            assert (await app.cli("delivernow"))["text"] == \
                "Delivery rescheduled for all hosts."
            assert await app.cli("delivernow", host="x.test") == {
                "ok": False, "error": "No record of host: x.test", "exit": 1}
        run(tmp_path, sock_dir, body)

    def test_suspenddel_and_resumedel(self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            assert (await app.cli("resumedel"))["text"] == "Mail delivery was not suspended."
            assert (await app.cli("suspenddel"))["text"] == "Mail delivery suspended."
            assert app.queues.suspended
            assert (await app.cli("resumedel"))["text"] == "Mail delivery resumed."
            assert not app.queues.suspended
            lines = app.log_lines()
            assert any(x.endswith("Delivery suspended by operator") for x in lines)
            assert sum(x.endswith("Delivery resumed by operator") for x in lines) == 1
        run(tmp_path, sock_dir, body)


class TestListenerCommands:
    def test_suspend_and_resume_one_listener(self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            await app.listeners.bind_all()
            assert sorted(app.listeners.servers) == ["IncomingMail", "cpq_listener"]
            reply = await app.cli("suspendlisteners", listener="cpq_listener")
            assert reply == {"ok": True, "text": "Receiving suspended for cpq_listener."}
            assert app.listeners.cpq_suspended() and app.listeners.online
            assert (await app.cli("suspendlisteners", listener="cpq_listener"))["text"] == \
                "No listeners were suspended."
            assert (await app.cli("resumelisteners"))["text"] == \
                "Receiving resumed for cpq_listener."
            assert not app.listeners.cpq_suspended()
            assert (await app.cli("resumelisteners"))["text"] == "No listeners were resumed."
            assert app.bound == ["IncomingMail", "cpq_listener", "cpq_listener"]
            assert await app.cli("suspendlisteners", listener="nope") == {
                "ok": False, "exit": 1,
                "error": "Unknown listener: nope (listeners: IncomingMail, cpq_listener)"}
        run(tmp_path, sock_dir, body)

    def test_suspend_and_resume_everything(self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            await app.listeners.bind_all()
            reply = await app.cli("suspend")
            assert reply["text"] == ("Receiving suspended for IncomingMail, cpq_listener.\n"
                                     "Mail delivery suspended.")
            status = (await app.cli("status"))["data"]
            assert status["system_status"] == "Offline"
            assert status["receiving_suspended"] == ["IncomingMail", "cpq_listener"]
            assert status["delivery_suspended"] is True
            assert (await app.cli("resume"))["text"] == (
                "Receiving resumed for IncomingMail, cpq_listener.\nMail delivery resumed.")
            assert (await app.cli("resume"))["text"] == (
                "No listeners were resumed.\nMail delivery was not suspended.")
            assert (await app.cli("status"))["data"]["system_status"] == "Online"
        run(tmp_path, sock_dir, body)


class TestStatusCommands:
    def test_status(self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            app.queue(1, "alice@a.test", "b.test", "c.test")
            app.queues.entries[1].recipients[0].attempts = 1
            app.counters.inc("messages_received", 3)
            data = (await app.cli("status"))["data"]
            assert data["hostname"] == "gw.test" and data["role"] == "gateway"
            assert data["up_since"] == RECEIVED - 60
            assert data["system_status"] == "Online" and data["receiving_suspended"] == []
            assert (data["active_recipients"], data["unattempted_recipients"],
                    data["attempted_recipients"]) == (2, 1, 1)
            assert (data["messages_in_queue"], data["destinations_in_memory"]) == (1, 2)
            assert data["oldest_message"] == RECEIVED + 1
            assert data["messages_in_work_queue"] == 7  # the role's gauges
            assert list(data["counters"]) == list(COUNTERS)
            assert data["counters"]["messages_received"] == [3, 3, 3]
        run(tmp_path, sock_dir, body)

    def test_rate_and_resetcounters(self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            app.queue(1, "alice@a.test", "b.test")
            app.counters.inc("delivered_recipients", 2)
            rate = (await app.cli("rate"))["data"]
            assert (rate["connections_in"], rate["connections_out"],
                    rate["messages_in_queue"]) == (0, 0, 1)
            assert rate["counters"]["delivered_recipients"] == 2
            assert await app.cli("resetcounters") == {"ok": True, "text": "Counters reset."}
            status = (await app.cli("status"))["data"]
            assert status["counters"]["delivered_recipients"] == [0, 2, 2]
        run(tmp_path, sock_dir, body)


class TestReload:
    def test_reload_says_what_it_did_or_why_not(self, tmp_path: Path, sock_dir: Path) -> None:
        async def body(app: Appliance) -> None:
            assert await app.cli("reload") == {"ok": True,
                                               "text": "Configuration reloaded from here."}
            app.reload_error = "Configuration reload refused: hostname change needs a restart"
            assert await app.cli("reload") == {
                "ok": False, "exit": 1,
                "error": "Configuration reload refused: hostname change needs a restart"}
            assert app.reloads == ["reloaded"]
        run(tmp_path, sock_dir, body)
