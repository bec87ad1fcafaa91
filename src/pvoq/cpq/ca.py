"""The deployment's CPQ certificate authority and the appliances' certificates.

`pvoq init` creates the CA once per deployment and issues each appliance a
certificate signed by it: the "hidden CPQ certificate" of the seed. Only
certificates of this CA are accepted on CPQ, in both directions.

This module writes key material with mode 0600 and never sends it anywhere.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pvoq.fsutil import atomic_write

CA_CERT_FILE = "cpq-ca.pem"
CA_KEY_FILE = "cpq-ca.key"
_CA_YEARS = 20
_CERT_DAYS = 825


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: Path
    private_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    atomic_write(path, pem, mode=0o600)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_ca(directory: Path, *, name: str = "pvoq CPQ CA") -> Path:
    """Create the CA in *directory* (cert + key); refuse to overwrite one."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if cert_path.exists() or key_path.exists():
        raise FileExistsError(f"a CPQ CA already exists in {directory}")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pvoq deployment")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * _CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return directory


def issue_certificate(ca_dir: Path, out_dir: Path, *, hostname: str, role: str,
                      addresses: list[str] | None = None, stem: str = "cpq") -> IssuedCertificate:
    """Issue an appliance certificate (server and client use) signed by the CA."""
    ca_cert = x509.load_pem_x509_certificate((ca_dir / CA_CERT_FILE).read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY_FILE).read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CPQ CA key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    for a in addresses or []:
        names.append(x509.IPAddress(ipaddress.ip_address(a)))
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname),
                                 x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / f"{stem}.pem", out_dir / f"{stem}.key"
    _write_key(key_path, key)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return IssuedCertificate(cert_path, key_path)


def certificate_problem(path: Path, *, now: dt.datetime | None = None) -> str | None:
    """Why the certificate at *path* cannot be used now, or None when it can."""
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        return f"the CPQ certificate {path} cannot be read ({exc})"
    now = now or _now()
    if cert.not_valid_after_utc <= now:
        return f"the CPQ certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    if cert.not_valid_before_utc > now:
        return f"the CPQ certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d}"
    return None


def _subject_field(peercert: dict | None, name: str) -> str | None:
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == name:
                return str(value)
    return None


def peer_common_name(peercert: dict | None) -> str | None:
    """The appliance hostname of a certificate as `getpeercert()` returns it."""
    return _subject_field(peercert, "commonName")


def peer_role(peercert: dict | None) -> str | None:
    """The role (`gateway` or `manager`) the CA wrote into the certificate."""
    return _subject_field(peercert, "organizationalUnitName")
