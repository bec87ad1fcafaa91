"""`<log_subscription>`: on by default, its settings read and checked (pvoq.config)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvoq.config.errors import ConfigError
from pvoq.config.loader import load_config
from pvoq.config.model import ROLE_MANAGER, LogSubscriptionSettings
from pvoq.config.template import ApplianceSpec, render

SPEC = ApplianceSpec(role=ROLE_MANAGER, hostname="mgr.example.com", serial="MGR-SN",
                     ip="127.0.0.1", cpq_port=7025, gateways=[("gw1.example.com", "127.0.0.1",
                                                               7026)])


def _write(tmp_path: Path, section: str) -> Path:
    certs = tmp_path / "certs"
    certs.mkdir(exist_ok=True)
    for name in ("cpq-ca.pem", "cpq.pem", "cpq.key"):
        (certs / name).touch()
    path = tmp_path / "config.xml"
    path.write_text(render(SPEC).replace("</config>", section + "</config>"), encoding="utf-8")
    return path


def test_on_by_default(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "")).log_subscription == LogSubscriptionSettings(
        enabled=True, interval_seconds=60.0, chunk_bytes=1024 * 1024, chunk_lines=10_000)


def test_settings_are_read(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, """
  <log_subscription>
    <enabled>false</enabled>
    <interval_seconds>5</interval_seconds>
    <chunk_bytes>65536</chunk_bytes>
    <chunk_lines>500</chunk_lines>
  </log_subscription>
"""))
    assert cfg.log_subscription == LogSubscriptionSettings(False, 5.0, 65536, 500)


def test_retention_and_copy_size_are_read(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, """
  <log_subscription>
    <retention_days>7.5</retention_days>
    <max_file_size>50M</max_file_size>
  </log_subscription>
"""))
    assert cfg.log_subscription.retention_days == 7.5
    assert cfg.log_subscription.max_file_size == 50 * 1024 * 1024
    assert load_config(_write(tmp_path, "")).log_subscription.retention_days == 30


@pytest.mark.parametrize(("element", "value"), [("chunk_bytes", "100"),
                                                ("retention_days", "-1"),
                                                ("max_file_size", "10X"),
                                                ("max_file_size", "100"),
                                                ("chunk_lines", "0"),
                                                ("interval_seconds", "0"),
                                                ("enabled", "perhaps"),
                                                ("chunk_size", "1")])
def test_bad_values_are_refused_naming_the_element(tmp_path: Path, element: str,
                                                   value: str) -> None:
    path = _write(tmp_path, f"<log_subscription><{element}>{value}</{element}>"
                            "</log_subscription>")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert element in str(info.value)
