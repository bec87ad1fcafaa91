"""What `pvoq cli` prints: `--json` is JSON alone, columns never run together, a command
sent to the wrong role says where it runs, and an empty listener list says why.

Against a real admin socket (`Appliance` of test_client), as the other CLI tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pvoq.cli.render import cell, columns, duration

from .test_client import HOSTNAME, Appliance, loads, run, short_dir  # noqa: F401

DAY = 86400
QUARANTINES = {
    "Outbreak": {"retention_s": 60.0, "default_action": "release", "free_up_space": True,
                 "builtin": True, "early_release": {}},
    "Policy": {"retention_s": 30 * DAY, "default_action": "delete", "free_up_space": False,
               "builtin": True, "early_release": {}},
    "Confidential-Legal-Hold": {"retention_s": 7200.0, "default_action": "delete",
                                "free_up_space": False, "builtin": False,
                                "early_release": {}},
}
SEARCH = {"total": 0, "offset": 0, "messages": []}
SEARCH_REPLY: dict[str, Any] = {"data": SEARCH}   # what quarantine.search answers (a test may
                                                  # swap the data for its own)


@pytest.fixture
def appliance(short_dir: Path) -> Iterator[Appliance]:  # noqa: F811
    app = Appliance(short_dir / "admin.sock")
    app.command("quarantine.config", {"data": {"quarantines": QUARANTINES, "quota_bytes": 0}})
    app.command("quarantine.saved", {"text": "Saved search 'mine'."})
    app.command("quarantine.search", SEARCH_REPLY)
    app.command("listeners", {"data": {"listeners": [], "not_shown": 1}})
    app.command("tophosts", {"data": {"status_as_of": 0, "hosts": [
        {"host": "a-very-long-recipient-host.example.com", "down": False, "active_rcpts": 12,
         "conn_out": 1, "deliv_rcpts": 3, "soft_bounces": 0, "hard_bounces": 0}]}})
    app.start()
    yield app
    app.stop()


class TestRender:
    @pytest.mark.parametrize(("seconds", "text"), [
        (60, "1 minute"), (0.0166667 * 3600, "1 minute"), (7200, "2 hours"),
        (30 * DAY, "30 days"), (36 * 3600, "36 hours"), (90, "90 seconds"), (1, "1 second"),
        (0.5, "0.5 seconds"), (1.5 * DAY + 1, "1.5 days"), (4000 * DAY, "4,000 days")])
    def test_durations_read_as_a_person_says_them(self, seconds: float, text: str) -> None:
        assert duration(seconds) == text

    def test_columns_are_as_wide_as_their_widest_cell(self) -> None:
        assert columns([["Name", "Type"], ["A-long-name", "x"], ["B", "yy"]]) == [
            "Name         Type", "A-long-name  x", "B            yy"]

    def test_a_cell_is_always_followed_by_a_space(self) -> None:
        assert cell("abc", 6) == "abc   " and cell("abcdefgh", 6) == "abcdefgh "


def test_search_save_json_prints_only_json(appliance: Appliance,
                                           loads: list[str]) -> None:  # noqa: F811
    """The line saying the search was saved goes to stderr: stdout parses as JSON."""
    result = run("quarantine", "search", "--save", "mine", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == SEARCH
    assert result.stderr == "Saved search 'mine'.\n"
    plain = run("quarantine", "search", "--save", "mine")
    assert plain.stdout.startswith("Saved search 'mine'.\n")


def test_quarantine_config_columns_and_durations(appliance: Appliance,
                                                loads: list[str]) -> None:  # noqa: F811
    result = run("quarantine", "config")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Name                     Type     Retention  Default  Free up space",
        "Outbreak                 builtin  1 minute   release  yes",
        "Policy                   builtin  30 days    delete   no",
        "Confidential-Legal-Hold  custom   2 hours    delete   no",
    ]


def test_tophosts_never_runs_a_long_host_into_the_counts(appliance: Appliance,
                                                        loads: list[str]) -> None:  # noqa: F811
    line = run("tophosts").stdout.splitlines()[-1]
    assert line.split() == ["1", "a-very-long-recipient-host.example.com", "12", "1", "3",
                            "0", "0"]


def test_a_manager_with_only_the_hidden_listener_says_so(appliance: Appliance,
                                                        loads: list[str]) -> None:  # noqa: F811
    result = run("listeners")
    assert (result.exit_code, result.stdout) == (0, "No listeners (1 hidden: listeners --all).\n")
    assert json.loads(run("listeners", "--json").stdout) == []


@pytest.mark.parametrize(("role", "command", "args", "owner"), [
    ("gateway", "quarantine.list", ("quarantine", "list"), "manager"),
    ("gateway", "gateway.list", ("gateway", "list"), "manager"),
    ("manager", "pipeline.show", ("pipeline", "show"), "gateway"),
    ("manager", "workqueue.status", ("workqueue", "status"), "gateway"),
])
def test_a_command_of_the_other_role_says_where_it_runs(
        appliance: Appliance, loads: list[str], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        role: str, command: str, args: tuple[str, ...], owner: str) -> None:
    """The appliance does not know the command: the CLI says which role it is for."""
    from pvoq.cli import client

    loader = client.load_config

    def with_role(path: str) -> Any:
        cfg = loader(path)
        cfg.role = role
        return cfg
    monkeypatch.setattr(client, "load_config", with_role)
    result = run(*args)
    assert result.exit_code == 2
    assert result.stderr == (f"{command} runs on the {owner}: {HOSTNAME} is a {role} "
                             f"(pvoq cli -c <the {owner}'s configuration> ...)\n")


def test_a_command_no_role_has_is_still_unknown(appliance: Appliance,
                                               loads: list[str]) -> None:  # noqa: F811
    result = run("reload")
    assert (result.exit_code, result.stderr) == (2, "Unknown command: reload\n")


def test_a_total_over_the_cap_says_more_than(appliance: Appliance,
                                             loads: list[str]) -> None:  # noqa: F811
    """A total the manager stopped counting at its cap reads "more than"; an exact one not."""
    try:
        SEARCH_REPLY["data"] = {**SEARCH, "total": 10000, "total_exact": False}
        over = run("quarantine", "search")
        assert over.exit_code == 0, over.output
        assert "more than 10,000 messages found" in over.stdout
        SEARCH_REPLY["data"] = {**SEARCH, "total": 3, "total_exact": True}
        assert "3 messages found" in run("quarantine", "search").stdout
    finally:
        SEARCH_REPLY["data"] = SEARCH
