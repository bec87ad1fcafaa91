"""`pvoq init --managed-by`: a gateway configuration listing several managers."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pvoq.cli.main import main
from pvoq.config.loader import load_config
from pvoq.config.model import ManagerRecord


def test_managed_by_writes_the_managers_in_order(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [
        "init", str(tmp_path / "gw"), "--role", "gateway", "--hostname", "gw1.example",
        "--ca-dir", str(tmp_path / "ca"),
        "--managed-by", "mgr-a.example=192.0.2.10:7025",
        "--managed-by", "mgr-b.example=192.0.2.11:7030"])
    assert result.exit_code == 0, result.output
    cfg = load_config(tmp_path / "gw" / "pvoq.xml")
    assert cfg.pvo.all_managers == (ManagerRecord("192.0.2.10", "mgr-a.example", 7025),
                                    ManagerRecord("192.0.2.11", "mgr-b.example", 7030))


def test_managed_by_without_a_hostname_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [
        "init", str(tmp_path / "gw"), "--role", "gateway", "--hostname", "gw1.example",
        "--ca-dir", str(tmp_path / "ca"), "--managed-by", "192.0.2.10:7025"])
    assert result.exit_code == 2
    assert "--managed-by '192.0.2.10:7025': expected HOSTNAME=HOST:PORT" in result.output
    assert not (tmp_path / "gw" / "pvoq.xml").exists()
