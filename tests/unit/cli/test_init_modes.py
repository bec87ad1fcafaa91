"""`pvoq init` under umask 000: every command sets the process umask at entry, so what it
writes (here the CA, written 0644 by its module) is not open to other users."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pvoq.cli.main import main
from pvoq.testing.files import loose_paths


def test_init_under_umask_000(tmp_path: Path, umask_000: None) -> None:
    result = CliRunner().invoke(main, ["init", str(tmp_path / "gw"), "--role", "gateway",
                                       "--hostname", "gw.test", "--ca-dir",
                                       str(tmp_path / "ca")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ca" / "cpq-ca.pem").exists()
    assert loose_paths(tmp_path / "gw", secrets=("cpq.key",)) == []
    assert loose_paths(tmp_path / "ca", secrets=("cpq-ca.key",)) == []
