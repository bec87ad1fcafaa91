"""`<received_header>` of a listener: on by default, `false` turns it off, a bad value names it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvoq.config.errors import ConfigError
from pvoq.config.loader import load_config
from pvoq.config.model import CPQ_LISTENER_NAME, ROLE_GATEWAY, Config
from pvoq.config.template import ApplianceSpec, render

SPEC = ApplianceSpec(role=ROLE_GATEWAY, hostname="gw1.example.com", serial="GW1-SN",
                     ip="10.1.2.1", smtp_port=2525, manager_address="10.1.2.3")
MARKER = "<listener_name>IncomingMail</listener_name>\n"


def load(tmp_path: Path, value: str | None) -> Config:
    text = render(SPEC)
    if value is not None:
        text = text.replace(MARKER, MARKER + f"    <received_header>{value}</received_header>\n")
    certs = tmp_path / "certs"
    certs.mkdir(exist_ok=True)
    for name in ("cpq-ca.pem", "cpq.pem", "cpq.key"):
        (certs / name).touch()
    path = tmp_path / "config.xml"
    path.write_text(text, encoding="utf-8")
    return load_config(path.resolve())


def test_on_by_default_and_off_when_false(tmp_path: Path) -> None:
    listeners = {x.name: x for x in load(tmp_path, None).listeners}
    assert listeners["IncomingMail"].received_header is True
    assert {x.name: x.received_header for x in load(tmp_path, "false").listeners} == {
        "IncomingMail": False, CPQ_LISTENER_NAME: True}  # a CPQ listener never adds one anyway


def test_a_bad_value_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "sometimes")
    assert info.value.field.endswith("listener.received_header")
