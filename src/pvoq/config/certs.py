"""What is wrong with the certificates a configuration names, file by file.

The loader only checks that the certificate files exist; reading them is for
whoever builds a TLS context. OpenSSL then says `PEM lib` without naming the
file: `load_problem` says which file and why instead. `check_certificates`
is what `pvoq config check` adds to loading: for the CPQ certificate, that
each file reads, the key is the certificate's, the certificate is valid
today, issued by the configured CA, and names this appliance (its CN is the
hostname; the role the CA wrote matches); for a listener's STARTTLS pair,
that it reads, matches and is valid today.

Each problem is a `ConfigError` whose field is the configuration element
naming the file (`config.cpq_certificate.certificate`), with that element's
line when the loader recorded it (`CpqCertificate.lines`), and whose message
names the file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from pvoq.config.errors import ConfigError
from pvoq.config.model import Config, CpqCertificate

_SECTION = "config.cpq_certificate"


class _Problem(Exception):
    """One file's problem: the configuration element naming it and why."""

    def __init__(self, element: str, message: str) -> None:
        super().__init__(message)
        self.element = element
        self.message = message


def _read(path: Path, element: str, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _Problem(element, f"cannot read the {what} {path}: {exc.strerror}") from None
    if not data.strip():
        raise _Problem(element, f"the {what} {path} is empty")
    return data


def _certificate(path: Path, element: str, what: str) -> x509.Certificate:
    data = _read(path, element, what)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise _Problem(element, f"the {what} {path} holds no PEM certificate") from None


def _key(path: Path, element: str) -> PrivateKeyTypes:
    data = _read(path, element, "private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise _Problem(element, f"the private key {path} is encrypted (it must not "
                                "need a password)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise _Problem(element, f"the private key {path} holds no PEM private key") from None


def _public_bytes(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _matching_pair(cert_path: Path, key_path: Path, cert_element: str, key_element: str,
                   what: str) -> x509.Certificate:
    """The certificate at *cert_path*, once it and its key read and belong together."""
    cert = _certificate(cert_path, cert_element, what)
    key = _key(key_path, key_element)
    if _public_bytes(key.public_key()) != _public_bytes(cert.public_key()):
        raise _Problem(key_element, f"the private key {key_path} is not the key of the "
                                    f"certificate {cert_path}")
    return cert


def _valid_now(cert: x509.Certificate, path: Path, element: str, what: str,
               now: dt.datetime) -> None:
    if cert.not_valid_after_utc <= now:
        raise _Problem(element, f"the {what} {path} expired on "
                                f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if cert.not_valid_before_utc > now:
        raise _Problem(element, f"the {what} {path} is not valid before "
                                f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")


def _names(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def _error(cert: CpqCertificate, problem: _Problem) -> ConfigError:
    """*problem* of one of the CPQ certificate's files, on the line of the element naming it."""
    line = cert.lines.get(problem.element.rsplit(".", 1)[-1])
    return ConfigError(problem.message, field=problem.element, line=line)


def load_problem(cert: CpqCertificate, cause: BaseException | None = None) -> ConfigError:
    """Why the CPQ certificate files do not load, naming the file (*cause*: OpenSSL's error)."""
    try:
        _certificate(cert.ca_certificate, f"{_SECTION}.ca_certificate", "CA certificate")
        _matching_pair(cert.certificate, cert.private_key, f"{_SECTION}.certificate",
                       f"{_SECTION}.private_key", "certificate")
    except _Problem as problem:
        return _error(cert, problem)
    detail = f": {cause}" if cause is not None else ""
    return ConfigError(f"cannot load the CPQ certificate {cert.certificate}{detail}",
                       field=f"{_SECTION}.certificate", line=cert.lines.get("certificate"))


def _check_cpq(config: Config, now: dt.datetime) -> None:
    cert = config.cpq_certificate
    ca = _certificate(cert.ca_certificate, f"{_SECTION}.ca_certificate", "CA certificate")
    _valid_now(ca, cert.ca_certificate, f"{_SECTION}.ca_certificate", "CA certificate", now)
    element = f"{_SECTION}.certificate"
    mine = _matching_pair(cert.certificate, cert.private_key, element,
                          f"{_SECTION}.private_key", "certificate")
    _valid_now(mine, cert.certificate, element, "certificate", now)
    try:
        mine.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise _Problem(element, f"the certificate {cert.certificate} is not issued by the CA "
                                f"{cert.ca_certificate} (its issuer: "
                                f"{mine.issuer.rfc4514_string()})") from None
    names = _names(mine, NameOID.COMMON_NAME)
    if [n.lower() for n in names] != [config.hostname.lower().rstrip(".")]:
        raise _Problem(element, f"the certificate {cert.certificate} names "
                                f"{', '.join(names) or 'no CN'}, not this appliance's "
                                f"hostname {config.hostname} (system.hostname)")
    roles = _names(mine, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if roles and config.role not in roles:
        raise _Problem(element, f"the certificate {cert.certificate} is a {roles[0]}'s, "
                                f"this appliance is a {config.role}")


def check_certificates(config: Config, *,
                       now: dt.datetime | None = None) -> list[ConfigError]:
    """Every certificate problem of *config*: the CPQ certificate's first, then each listener's."""
    now = now or dt.datetime.now(dt.UTC)
    problems: list[ConfigError] = []
    try:
        _check_cpq(config, now)
    except _Problem as problem:
        problems.append(_error(config.cpq_certificate, problem))
    for index, listener in enumerate(config.listeners):
        if listener.certificate is None or listener.private_key is None:
            continue
        section = f"config.listeners.listener[{index + 1}]" if index else \
            "config.listeners.listener"
        try:
            cert = _matching_pair(listener.certificate, listener.private_key,
                                  f"{section}.certificate", f"{section}.private_key",
                                  f"certificate of listener {listener.name}")
            _valid_now(cert, listener.certificate, f"{section}.certificate",
                       f"certificate of listener {listener.name}", now)
        except _Problem as problem:
            problems.append(ConfigError(problem.message, field=problem.element))
    return problems
