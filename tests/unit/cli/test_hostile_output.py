"""Hostile strings in the terminal: a real quarantined message whose subject and body carry
rich markup, ESC and C1 sequences and a bidi override, shown by `pvoq cli` against a real
deployment (real processes, real admin sockets), and hostile log lines through grep/tail.

Nothing reaches the terminal raw: markup is printed as text (never parsed, never a
traceback, never a hidden hyperlink), control characters are shown as `\\x1b`, `\\x9b`,
the override as `\\u202e`; `--json` keeps the exact string.
"""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvoq.cli.render import rich_text, safe
from pvoq.testing.localdeploy import Deployment, wait_for

HOSTILE = "confidential [/bold] [link=http://x]y[/link] \x1b[2J \x9b31m \u202eevil"
BODY = "body \x1b]0;pwned\x07 \x9b2J \u202eevil [/bold]"
RAW = ("\x1b", "\x9b", "\u202e", "\x07")


def pvoq(*args: str) -> subprocess.CompletedProcess[str]:
    # wide enough that no table cell is folded over two lines
    return subprocess.run([sys.executable, "-m", "pvoq", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "400"})


def assert_harmless(output: str) -> None:
    for char in RAW:
        assert char not in output, f"{char!r} reached the terminal raw"
    assert "Traceback" not in output


class TestSafe:
    def test_controls_and_bidi_are_shown_visibly(self) -> None:
        assert safe("a\x1b[2Jb\x9b31m\u202ec\x00\x7f") == "a\\x1b[2Jb\\x9b31m\\u202ec\\x00\\x7f"

    def test_one_line_unless_told_otherwise(self) -> None:
        assert safe("a\r\nb\tc") == "a\\x0d\\x0ab\\x09c"
        assert safe("a\r\nb\tc\x1b", multiline=True) == "a\nb\tc\\x1b"

    def test_plain_text_is_untouched(self) -> None:
        text = "Grüße [b]not markup[/b] \\x1b literally, 日本語"
        assert safe(text) == text

    def test_a_rich_cell_is_never_markup(self) -> None:
        cell = rich_text("[link=http://x]y[/link] [/bold]")
        assert cell.plain == "[link=http://x]y[/link] [/bold]" and not cell.spans


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, int]]:
    dep = Deployment(tmp_path_factory.mktemp("hostile") / "d", retry_min_s=0.5,
                     retry_max_s=2.0)
    dep.init()
    try:
        dep.start()
        message = (f"From: alice@sender.example\r\nTo: bob@example.com\r\n"
                   f"Subject: {HOSTILE}\r\n\r\n{BODY}\r\n").encode()  # raw UTF-8 header
        with smtplib.SMTP(dep.ip, dep.ports["gateway_smtp"], timeout=30) as smtp:
            smtp.sendmail("alice@sender.example", ["bob@example.com"], message)
        held = wait_for("the hostile message quarantined", lambda: dep.quarantined())
        yield dep, held[0]["id"]
    finally:
        dep.stop_all()


def test_quarantine_list_and_search_show_markup_as_text(
        deployment: tuple[Deployment, int]) -> None:
    dep, _ = deployment
    for args in (("quarantine", "list"), ("quarantine", "search")):
        result = pvoq("cli", "-c", str(dep.manager_config), *args)
        assert result.returncode == 0, result.stderr
        assert_harmless(result.stdout + result.stderr)
        for shown in ("[/bold]", "[link=http://x]y[/link]", "\\x1b[2J", "\\x9b31m",
                      "\\u202eevil"):
            assert shown in result.stdout, (shown, result.stdout)


def test_quarantine_show_escapes_header_and_body(deployment: tuple[Deployment, int]) -> None:
    dep, mid = deployment
    result = pvoq("cli", "-c", str(dep.manager_config), "quarantine", "show", str(mid))
    assert result.returncode == 0, result.stderr
    assert_harmless(result.stdout)
    assert f"Subject:           {safe(HOSTILE)}\n" in result.stdout
    assert "body \\x1b]0;pwned\\x07 \\x9b2J \\u202eevil [/bold]" in result.stdout


def test_json_keeps_the_exact_string(deployment: tuple[Deployment, int]) -> None:
    dep, mid = deployment
    result = pvoq("cli", "-c", str(dep.manager_config), "quarantine", "show", str(mid),
                  "--json")
    assert result.returncode == 0, result.stderr
    assert_harmless(result.stdout)  # JSON escapes them itself
    assert json.loads(result.stdout)["subject"] == HOSTILE


def test_grep_and_tail_escape_log_lines(deployment: tuple[Deployment, int]) -> None:
    dep, _ = deployment
    log = Path(dep.root / "manager" / "data" / "logs" / "mail_logs")
    with log.open("a", encoding="utf-8") as f:  # as a log written by another program might be
        f.write("Mon Nov 30 10:00:00 2026 Info: hostile \x1b[2J\x9b31m\u202e line\n")
    shown = "hostile \\x1b[2J\\x9b31m\\u202e line"
    grep = pvoq("cli", "-c", str(dep.manager_config), "grep", "-e", "hostile")
    assert grep.returncode == 0, grep.stderr
    assert_harmless(grep.stdout)
    assert shown in grep.stdout
    tail = pvoq("cli", "-c", str(dep.manager_config), "tail", "-n", "5")
    assert tail.returncode == 0, tail.stderr
    assert_harmless(tail.stdout)
    assert shown in tail.stdout
