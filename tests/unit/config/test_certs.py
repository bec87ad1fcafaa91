"""Tests for pvoq.config.certs: what `pvoq config check` finds wrong with the certificates."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from test_loader import GATEWAY_SPEC, line_of

from pvoq.config.certs import check_certificates, load_problem
from pvoq.config.loader import load_config
from pvoq.config.model import ROLE_GATEWAY, ROLE_MANAGER, Config
from pvoq.config.template import render
from pvoq.cpq.ca import create_ca, issue_certificate

CERT = "config.cpq_certificate.certificate"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A gateway configuration with a CA and the gateway's certificate issued by it."""
    certs = tmp_path / "certs"
    create_ca(certs)
    issue_certificate(certs, certs, hostname=GATEWAY_SPEC.hostname, role=ROLE_GATEWAY)
    (tmp_path / "config.xml").write_text(render(GATEWAY_SPEC), encoding="utf-8")
    return tmp_path


def config(base: Path) -> Config:
    return load_config(base / "config.xml")


def reissue(base: Path, *, ca: Path | None = None, hostname: str = GATEWAY_SPEC.hostname,
            role: str = ROLE_GATEWAY) -> None:
    """Replace the gateway's certificate and key by ones issued by *ca* (default: its own)."""
    issue_certificate(ca or base / "certs", base / "certs", hostname=hostname, role=role)


def only_problem(base: Path, **kwargs: dt.datetime) -> tuple[str, str, int | None]:
    problems = check_certificates(config(base), **kwargs)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0].field, problems[0].message, problems[0].line


def line(base: Path, tag: str) -> int:
    return line_of((base / "config.xml").read_text(), f"<{tag}>")


def test_certificates_issued_for_this_appliance_pass(base: Path) -> None:
    assert check_certificates(config(base)) == []


def test_hostname_that_is_not_the_certificate_cn(base: Path) -> None:
    """`config check` passed though peers would refuse the name."""
    reissue(base, hostname="other.example.com")
    cert = base / "certs" / "cpq.pem"
    assert only_problem(base) == (
        CERT, f"the certificate {cert} names other.example.com, not this appliance's hostname "
        f"{GATEWAY_SPEC.hostname} (system.hostname)", line(base, "certificate"))


def test_certificate_of_another_ca(base: Path, tmp_path: Path) -> None:
    """`config check` passed though the CPQ handshake fails."""
    other = tmp_path / "other-ca"
    create_ca(other, name="another CA")
    reissue(base, ca=other)
    field, message, _ = only_problem(base)
    assert field == CERT
    assert message == (f"the certificate {base / 'certs' / 'cpq.pem'} is not issued by the CA "
                       f"{base / 'certs' / 'cpq-ca.pem'} (its issuer: "
                       "O=pvoq deployment,CN=another CA)")


def test_key_that_is_not_the_certificate_key(base: Path, tmp_path: Path) -> None:
    issued = issue_certificate(base / "certs", tmp_path / "spare", hostname="x.example",
                               role=ROLE_GATEWAY)
    shutil.copy(issued.private_key, base / "certs" / "cpq.key")
    key = base / "certs" / "cpq.key"
    assert only_problem(base) == (
        "config.cpq_certificate.private_key",
        f"the private key {key} is not the key of the certificate {base / 'certs' / 'cpq.pem'}",
        line(base, "private_key"))


def test_expired_certificate(base: Path) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=900)
    field, message, _ = only_problem(base, now=later)
    assert field == CERT
    assert message.startswith(f"the certificate {base / 'certs' / 'cpq.pem'} expired on ")


def test_certificate_not_yet_valid(base: Path) -> None:
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    field, message, _ = only_problem(base, now=earlier)
    assert field == "config.cpq_certificate.ca_certificate"
    assert "is not valid before" in message


def test_certificate_of_the_other_role(base: Path) -> None:
    reissue(base, role=ROLE_MANAGER)
    field, message, _ = only_problem(base)
    assert field == CERT and message.endswith("is a manager's, this appliance is a gateway")


@pytest.mark.parametrize(("name", "content", "field", "why"), [
    ("cpq.pem", b"", CERT, "is empty"),
    ("cpq.pem", b"not a certificate", CERT, "holds no PEM certificate"),
    ("cpq-ca.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
     "config.cpq_certificate.ca_certificate", "holds no PEM certificate"),
    ("cpq.key", b"garbage", "config.cpq_certificate.private_key", "holds no PEM private key"),
])
def test_files_that_do_not_read_are_named_with_their_line(
        base: Path, name: str, content: bytes, field: str, why: str) -> None:
    """OpenSSL said `PEM lib` with no file and no line."""
    (base / "certs" / name).write_bytes(content)
    cfg = config(base)
    tag = field.rsplit(".", 1)[1]
    for error in (load_problem(cfg.cpq_certificate), check_certificates(cfg)[0]):
        assert error.field == field
        assert error.line == line(base, tag)
        assert str(base / "certs" / name) in error.message and error.message.endswith(why)


def test_unloadable_pair_through_tls(base: Path) -> None:
    """The TLS context builder reports the same, with the line, instead of `PEM lib`."""
    from pvoq.cpq.tls import client_context
    (base / "certs" / "cpq.pem").write_bytes(b"junk")
    cfg = config(base)
    with pytest.raises(Exception) as info:
        client_context(cfg.cpq_certificate, ciphers=cfg.ssl.outbound_ciphers)
    text = str(info.value.located(path=str(cfg.path)))  # type: ignore[attr-defined]
    assert text == (f"{cfg.path}:{line(base, 'certificate')}: {CERT}: the certificate "
                    f"{base / 'certs' / 'cpq.pem'} holds no PEM certificate")


def test_listener_certificate_pair(base: Path, tmp_path: Path) -> None:
    one = issue_certificate(base / "certs", tmp_path / "one", hostname="mx.example",
                            role=ROLE_GATEWAY, stem="a")
    two = issue_certificate(base / "certs", tmp_path / "two", hostname="mx.example",
                            role=ROLE_GATEWAY, stem="b")
    text = (base / "config.xml").read_text().replace(
        "<type>public</type>", f"<type>public</type>\n    <certificate>{one.certificate}"
        f"</certificate>\n    <private_key>{two.private_key}</private_key>", 1)
    (base / "config.xml").write_text(text)
    field, message, _ = only_problem(base)
    assert field == "config.listeners.listener.private_key"
    assert message == (f"the private key {two.private_key} is not the key of the certificate "
                       f"{one.certificate}")
