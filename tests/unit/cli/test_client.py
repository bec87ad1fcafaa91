"""Tests for pvoq.cli.client: one `pvoq cli` invocation against a real admin socket.

An `AdminServer` with a few registered commands runs on a temporary Unix
socket in a thread of its own; `pvoq cli` is invoked through click's runner
with the configuration loader replaced by one that counts its calls.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
from click.testing import CliRunner

from pvoq.admin.protocol import AdminServer, CommandError
from pvoq.cli import client
from pvoq.cli.client import ClientContext, print_json, request
from pvoq.cli.main import main

HOSTNAME = "gw1.example.com"
LISTENERS = [{"name": "IncomingMail", "interface": "Management", "address": "127.0.0.1",
              "port": 2525, "protocol": "SMTP", "type": "public", "hidden": False,
              "sender_groups": ["ALLOWLIST", "UNKNOWNLIST"]}]


class Appliance:
    """An admin server in a thread of its own, recording the requests it answers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.server = AdminServer(path)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def command(self, name: str, reply: dict[str, Any] | Exception) -> None:
        async def answer(args: dict[str, Any]) -> dict[str, Any]:
            self.requests.append((name, args))
            if isinstance(reply, Exception):
                raise reply
            return reply
        self.server.register(name, answer)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket path is limited to about 100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="pvoq-cli-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def loads(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the configuration loader; the list holds each path it was asked to load."""
    calls: list[str] = []

    def fake_load(path: str) -> Any:
        calls.append(path)
        return SimpleNamespace(admin_socket=short_dir / "admin.sock", role="gateway",
                               hostname=HOSTNAME, logs_dir=short_dir / "logs")
    monkeypatch.setattr(client, "load_config", fake_load)
    return calls


@pytest.fixture
def appliance(short_dir: Path) -> Iterator[Appliance]:
    app = Appliance(short_dir / "admin.sock")
    app.command("showrecipients", {"data": {"total": 3, "messages": []}})
    app.command("deleterecipients", {"data": {"deleted": 3}})
    app.command("listeners", {"data": {"listeners": LISTENERS}})
    app.command("resetcounters", {"text": "Counters reset."})
    app.command("delivernow", CommandError("No host example.org in the delivery queues."))
    app.start()
    yield app
    app.stop()


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["cli", "-c", "gw.xml", *args])


def test_configuration_loaded_once_for_several_requests(
        appliance: Appliance, loads: list[str]) -> None:
    """`deleterecipients --all` asks twice (how many, then delete) and loads the file once."""
    result = run("deleterecipients", "--all")
    assert result.exit_code == 0, result.output
    assert result.stdout == "3 messages deleted.\n"
    assert [name for name, _ in appliance.requests] == ["showrecipients", "deleterecipients"]
    assert appliance.requests[0][1] == {"by": "all", "limit": 1}
    assert appliance.requests[1][1] == {"by": "all", "limit": 5000}
    assert loads == ["gw.xml"]


def test_text_reply_is_printed(appliance: Appliance, loads: list[str]) -> None:
    result = run("resetcounters")
    assert result.exit_code == 0
    assert result.stdout == "Counters reset.\n"


def test_not_running_exits_1_naming_the_appliance(loads: list[str], short_dir: Path) -> None:
    result = run("resetcounters")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"pvoq: gateway {HOSTNAME} is not running: "
                                    f"no running appliance answers on {short_dir / 'admin.sock'}")


def test_command_error_exits_1_with_its_text(appliance: Appliance, loads: list[str]) -> None:
    result = run("delivernow", "example.org")
    assert result.exit_code == 1
    assert result.stderr == "No host example.org in the delivery queues.\n"
    assert appliance.requests == [("delivernow", {"host": "example.org"})]


def test_response_exit_code_is_the_command_exit_code(
        appliance: Appliance, loads: list[str]) -> None:
    """The appliance does not know `reload`: its exit 2 is the command's exit code."""
    result = run("reload")
    assert result.exit_code == 2
    assert result.stderr == "Unknown command: reload\n"


def test_json_prints_the_data_as_is(appliance: Appliance, loads: list[str]) -> None:
    result = run("listeners", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == LISTENERS
    assert result.stdout == json.dumps(LISTENERS, indent=2) + "\n"


def test_without_json_the_data_is_rendered(appliance: Appliance, loads: list[str]) -> None:
    result = run("listeners")
    assert result.exit_code == 0
    assert result.stdout == ("Currently configured listeners:\n"
                             "1. IncomingMail (Management: 127.0.0.1/2525) SMTP public  "
                             "sender groups: ALLOWLIST, UNKNOWNLIST\n")


def test_bad_configuration_exits_2(tmp_path: Path) -> None:
    """The real loader: a file that does not parse is one `configuration error` line, exit 2."""
    bad = tmp_path / "bad.xml"
    bad.write_text("<config><system>")
    result = CliRunner().invoke(main, ["cli", "-c", str(bad), "resetcounters"])
    assert result.exit_code == 2
    assert result.stderr.startswith("pvoq: configuration error: ")
    assert str(bad) in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_commands_reading_files_send_no_request(loads: list[str], short_dir: Path) -> None:
    """`tail` reads the log itself: the configuration is loaded once, nothing is asked."""
    result = run("tail", "-n", "1")
    assert result.exit_code == 1
    assert result.stderr == f"pvoq: no mail_logs yet at {short_dir / 'logs' / 'mail_logs'}\n"
    assert loads == ["gw.xml"]


def test_client_context_caches_the_configuration(loads: list[str]) -> None:
    invocation = ClientContext("gw.xml")
    assert invocation.config is invocation.config
    assert loads == ["gw.xml"]


def test_request_outside_pvoq_cli_is_a_usage_error() -> None:
    @click.command()
    @click.pass_context
    def orphan(ctx: click.Context) -> None:
        request(ctx, "status")

    result = CliRunner().invoke(orphan, [])
    assert result.exit_code == 2
    assert "pvoq cli -c FILE" in result.stderr


def test_print_json_says_whether_it_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert print_json(False, {"a": 1}) is False
    assert capsys.readouterr().out == ""
    assert print_json(True, {"a": 1}) is True
    assert capsys.readouterr().out == '{\n  "a": 1\n}\n'
