"""Tests for `pvoq cli -c FILE reload` with a file that does not load (pvoq.cli.operator).

The file is the running appliance's to refuse: the request reaches a real
admin socket in the file's `<data_dir>`, whose answer is the command's.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from pvoq.admin.protocol import CommandError
from pvoq.cli.main import main
from pvoq.config.loader import data_dir_of

from .test_client import Appliance

REFUSAL = "Configuration reload refused, the running one is kept: gw.xml:5: ..."


@pytest.fixture
def home() -> Iterator[Path]:
    """A directory with a short path (a Unix socket path is limited to about 100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="pvoq-reload-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def appliance(home: Path) -> Iterator[Appliance]:
    """The appliance running from `home/gw.xml`: its socket in `home/data`, reload refused."""
    (home / "data").mkdir()
    app = Appliance(home / "data" / "admin.sock")
    app.command("reload", CommandError(REFUSAL))
    app.start()
    yield app
    app.stop()


BROKEN = {
    "a value out of range": ("<config>\n  <system>\n    <role>gateway</role>\n"
                             "    <data_dir>data</data_dir>\n  </system>\n"
                             "  <listeners><listener><timeout_seconds>nan</timeout_seconds>"
                             "</listener></listeners>\n</config>\n"),
    "XML that does not parse": ("<config>\n  <system>\n    <data_dir> data </data_dir>\n"
                                "  </system>\n  <listeners>\n</config>\n"),
}


def reload(path: Path) -> object:
    return CliRunner().invoke(main, ["cli", "-c", str(path), "reload"])


@pytest.mark.parametrize("broken", BROKEN)
def test_a_broken_file_is_sent_to_the_running_appliance(
        home: Path, appliance: Appliance, broken: str) -> None:
    """It exited 2 without asking: now the appliance refuses it and keeps running (exit 1)."""
    config = home / "gw.xml"
    config.write_text(BROKEN[broken])
    result = reload(config)
    assert [name for name, _ in appliance.requests] == ["reload"]
    assert result.exit_code == 1
    assert result.stderr == REFUSAL + "\n"


def test_a_broken_file_with_nothing_running_is_a_configuration_error(home: Path) -> None:
    config = home / "gw.xml"
    config.write_text(BROKEN["XML that does not parse"])
    result = reload(config)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"pvoq: configuration error: {config}:5: config.listeners: ")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("<config><system><data_dir>/srv/gw</data_dir></system></config>", "/srv/gw"),
    ("<config><system><data_dir>d</data_dir><role>", "{home}/d"),
    ("<config><data_dir>a</data_dir><data_dir>b</data_dir><oops>", None),
    ("<config><system></system></config>", None),
    ("<config><system><data_dir>  </data_dir></system></config>", None),
])
def test_data_dir_of_a_file_that_may_not_load(home: Path, text: str,
                                              expected: str | None) -> None:
    config = home / "gw.xml"
    config.write_text(text)
    found = data_dir_of(config)
    assert found == (None if expected is None else Path(expected.format(home=home)).resolve())


def test_data_dir_of_a_missing_file(home: Path) -> None:
    assert data_dir_of(home / "none.xml") is None
