"""Every configuration default is declared once, in `config.model`.

For each model class, a configuration writes its section with only the
elements the file requires; every other field must load as the model's
`file_default`, and a section left out as the field's default in code. The
fields are iterated, so a new field is covered without a new test, and a
new model class fails `test_every_model_class_is_covered` until it has a row.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any

import pytest

from pvoq.config import model
from pvoq.config.loader import load_config
from pvoq.config.model import (
    CPQ_DEFAULT_PORT,
    RETENTION_DEFAULT,
    AntivirusSettings,
    ApiSettings,
    ApiToken,
    Config,
    ContentFilter,
    CpqCertificate,
    DeliverySettings,
    GatewayRecord,
    Interface,
    Listener,
    LogSubscriptionSettings,
    MailPolicy,
    ManagerRecord,
    MetricsSettings,
    OutbreakSettings,
    PvoSettings,
    QuarantineDefinition,
    QuarantineStoreSettings,
    Route,
    ScanSettings,
    SshSettings,
    SslConfig,
    file_default,
    model_default,
)

MINIMAL = """\
<?xml version="1.0" encoding="UTF-8"?>
<config>
  <system>
    <role>gateway</role>
    <hostname>gw1.example.com</hostname>
    <serial_number>GW1-SN</serial_number>
    <data_dir>data</data_dir>
  </system>
  <interfaces>
    <interface>
      <interface_name>Incoming Mail</interface_name>
      <ip>10.1.2.1</ip>
    </interface>
  </interfaces>
  <pvo_quarantines>
    <manager_address>10.1.2.3</manager_address>
{pvo}  </pvo_quarantines>
  <cpq_certificate>
    <ca_certificate>certs/cpq-ca.pem</ca_certificate>
    <certificate>certs/cpq.pem</certificate>
    <private_key>certs/cpq.key</private_key>
  </cpq_certificate>
{extra}</config>
"""

LISTENER = """\
  <listeners>
    <listener>
      <listener_name>IncomingMail</listener_name>
      {protocol}<interface_name>Incoming Mail</interface_name>
      <hat>
$ACCEPTED
  ACCEPT {{}}
ALL
  $ACCEPTED (everyone)
      </hat>
      <rat><rat_entry><rat_address>ALL</rat_address><access>ACCEPT</access></rat_entry></rat>
    </listener>
  </listeners>
"""

WRITTEN = object()
"""In `given`: the section writes this field (a required element), so it is no default."""


@dataclass(frozen=True)
class Section:
    """A model class, the section that writes only what the file requires, where it lands."""

    owner: type
    extra: str
    get: Callable[[Config], Any]
    given: dict[str, Any]
    pvo: str = ""


SECTIONS = [
    Section(Config, "", lambda c: c, dict.fromkeys(
        ("path", "role", "hostname", "serial_number", "data_dir", "interfaces", "listeners",
         "pvo", "cpq_certificate"), WRITTEN)),
    Section(Interface, "", lambda c: c.interfaces[0], {"name": WRITTEN, "ip": WRITTEN}),
    Section(CpqCertificate, "", lambda c: c.cpq_certificate,
            dict.fromkeys(("ca_certificate", "certificate", "private_key", "lines"), WRITTEN)),
    Section(Listener, LISTENER.format(protocol=""), lambda c: c.listeners[0],
            dict.fromkeys(("name", "interface_name", "hat", "rat"), WRITTEN)),
    Section(PvoSettings, "", lambda c: c.pvo,
            {"manager_address": WRITTEN, "interface_name": "Incoming Mail"}),
    Section(GatewayRecord, "", lambda c: c.pvo.gateways[0],
            {"hostname": WRITTEN, "address": WRITTEN},
            pvo="    <gateways><gateway><hostname>gw9</hostname>"
                "<address>10.1.2.9</address></gateway></gateways>\n"),
    Section(ManagerRecord, "", lambda c: c.pvo.managers[0],
            {"hostname": WRITTEN, "address": WRITTEN},
            pvo="    <managers><manager><address>10.1.2.9</address>"
                "<hostname>mgr9</hostname></manager></managers>\n"),
    Section(SshSettings, "  <ssh/>\n", lambda c: c.ssh, {"interface_name": "Incoming Mail"}),
    Section(SslConfig, "  <ssl_config/>\n", lambda c: c.ssl, {}),
    Section(DeliverySettings, "  <delivery/>\n", lambda c: c.delivery, {}),
    Section(Route, "  <delivery><smtp_routes><route><domain>example.com</domain>"
            "<destination>mx.example.com</destination></route></smtp_routes></delivery>\n",
            lambda c: c.delivery.routes[0], {"domain": WRITTEN, "host": WRITTEN}),
    Section(ScanSettings, "  <antivirus/>\n  <outbreak_filters/>\n  <scan_pipeline/>\n",
            lambda c: c.scan, {}),
    Section(ContentFilter, "  <content_filters><content_filter><name>c1</name>"
            "<regex>x</regex></content_filter></content_filters>\n",
            lambda c: c.scan.content_filters[0], {"name": WRITTEN, "pattern": WRITTEN}),
    Section(AntivirusSettings, "  <antivirus/>\n", lambda c: c.scan.antivirus, {}),
    Section(OutbreakSettings, "  <outbreak_filters/>\n", lambda c: c.scan.outbreak, {}),
    Section(MailPolicy, "  <mail_policies><policy><name>Execs</name><recipient>^ceo@</recipient>"
            "</policy></mail_policies>\n", lambda c: c.scan.policies[0],
            {"name": WRITTEN, "recipients": WRITTEN}),
    Section(QuarantineDefinition, "  <quarantines><quarantine><name>HR</name><early_release/>"
            "</quarantine></quarantines>\n", lambda c: c.quarantines[0],
            {"name": WRITTEN, "retention_seconds": RETENTION_DEFAULT[0] * {
                "minutes": 60, "hours": 3600, "days": 86400}[RETENTION_DEFAULT[1]]}),
    Section(QuarantineStoreSettings, "  <quarantine_store/>\n", lambda c: c.quarantine_store, {}),
    Section(ApiSettings, "  <api><port>8080</port></api>\n", lambda c: c.api,
            {"port": WRITTEN}),
    Section(ApiToken, "  <api><port>8080</port><token><value>t1</value><user>alice</user>"
            "</token></api>\n", lambda c: c.api.tokens[0], {"token": WRITTEN, "user": WRITTEN}),
    Section(LogSubscriptionSettings, "  <log_subscription/>\n", lambda c: c.log_subscription, {}),
    Section(MetricsSettings, "  <metrics><port>9325</port></metrics>\n", lambda c: c.metrics,
            {"port": WRITTEN}),
]


def load(directory: Path, extra: str = "", pvo: str = "") -> Config:
    certs = directory / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    for name in ("cpq-ca.pem", "cpq.pem", "cpq.key"):
        (certs / name).touch()
    path = directory / "config.xml"
    text = MINIMAL.format(pvo=pvo, extra=extra)
    if "<managers>" in pvo:  # the list replaces the single form
        text = text.replace("    <manager_address>10.1.2.3</manager_address>\n", "")
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: s.owner.__name__)
def test_a_written_section_gives_the_model_defaults(tmp_path: Path, section: Section) -> None:
    """Each element left out of a written section loads as the model's file_default."""
    loaded = section.get(load(tmp_path, section.extra, section.pvo))
    assert type(loaded) is section.owner
    for f in dataclasses.fields(section.owner):
        expected = section.given.get(f.name, file_default(section.owner, f.name))
        if expected is WRITTEN:
            continue
        assert expected is not MISSING, f"{section.owner.__name__}.{f.name} has no default"
        assert getattr(loaded, f.name) == expected, f"{section.owner.__name__}.{f.name}"


def test_sections_left_out_give_the_defaults_in_code(tmp_path: Path) -> None:
    """A minimal configuration's optional sections are the model classes' own defaults."""
    config = load(tmp_path)
    for f in dataclasses.fields(Config):
        default = model_default(Config, f.name)
        if default is not MISSING:
            assert getattr(config, f.name) == default, f"Config.{f.name}"
    assert config.scan == ScanSettings()
    assert config.ssh == SshSettings() and not config.ssh.enabled
    assert config.api == ApiSettings() and not config.api.enabled


def test_a_cpq_listener_takes_the_cpq_port(tmp_path: Path) -> None:
    """The one default that depends on another element: a CPQ listener's port."""
    config = load(tmp_path, LISTENER.format(protocol="<protocol>CPQ</protocol>"))
    assert config.listeners[0].port == CPQ_DEFAULT_PORT
    assert file_default(Listener, "port") != CPQ_DEFAULT_PORT


def test_every_model_class_is_covered() -> None:
    """A new configuration class gets a row in SECTIONS, so its defaults are checked too."""
    classes = {cls for _, cls in inspect.getmembers(model, inspect.isclass)
               if dataclasses.is_dataclass(cls) and cls.__module__ == model.__name__}
    assert classes == {s.owner for s in SECTIONS}
