"""Tests for `<web>` (config.webload) and its TLS context (web.server.web_tls_context)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvoq.config.errors import ConfigError
from pvoq.config.loader import load_config
from pvoq.config.template import ApplianceSpec
from pvoq.deploy import init_appliance
from pvoq.web.server import web_tls_context


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return init_appliance(tmp_path / "gw", ApplianceSpec(role="gateway", hostname="gw.test",
                                                         serial="S1"),
                          ca_dir=tmp_path / "ca", web_port=8443)


def with_web(path: Path, web: str) -> Path:
    text = path.read_text()
    start, end = text.index("  <web>"), text.index("</web>") + len("</web>")
    path.write_text(text[:start] + web + text[end:])
    return path


def test_init_writes_https_with_a_ca_certificate(config_path: Path) -> None:
    web = load_config(config_path).web
    assert web.enabled and web.https and web.port == 8443
    assert web.certificate is not None and web.certificate.name == "web.pem"
    assert web_tls_context(web) is not None
    assert (web.private_key.stat().st_mode & 0o777) == 0o600   # type: ignore[union-attr]


def test_no_web_section_no_console(tmp_path: Path) -> None:
    path = init_appliance(tmp_path / "gw", ApplianceSpec(role="gateway", hostname="gw.test",
                                                         serial="S1"), ca_dir=tmp_path / "ca")
    assert not load_config(path).web.enabled
    assert not (tmp_path / "gw" / "certs" / "web.pem").exists()


@pytest.mark.parametrize(("web", "field", "words"), [
    ("<web><port>8443</port></web>", "config.web.certificate", "HTTPS needs"),
    ("<web><port>8443</port><certificate>certs/web.pem</certificate></web>",
     "config.web.private_key", "HTTPS needs"),
    ("<web><port>8443</port><certificate>certs/nope.pem</certificate>"
     "<private_key>certs/web.key</private_key></web>", "config.web.certificate",
     "file not found"),
    ("<web><port>99999</port><plain_http>true</plain_http></web>", "config.web.port", "port"),
    ("<web><port>8443</port><plain_http>true</plain_http>"
     "<certificate>certs/web.pem</certificate></web>", "config.web.plain_http", "plain_http"),
    ("<web><port>8443</port><plain_http>true</plain_http><lockout_failures>0"
     "</lockout_failures></web>", "config.web.lockout_failures", ""),
    ("<web><port>8443</port><plain_http>true</plain_http><colour>red</colour></web>",
     "config.web.colour", "unknown element"),
])
def test_bad_web_names_the_field(config_path: Path, web: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(with_web(config_path, web))
    assert field in str(caught.value) and words in str(caught.value)


def test_plain_http_only_when_said(config_path: Path) -> None:
    web = load_config(with_web(config_path, "<web><address>::1</address><port>8080</port>"
                                            "<plain_http>true</plain_http></web>")).web
    assert not web.https and web_tls_context(web) is None and web.address == "::1"


def test_a_certificate_that_is_not_one_names_the_field(config_path: Path) -> None:
    (config_path.parent / "certs" / "web.pem").write_text("garbage\n")
    web = load_config(config_path).web
    with pytest.raises(ConfigError, match="config.web"):
        web_tls_context(web)
