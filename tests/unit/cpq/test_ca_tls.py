"""Tests for pvoq.cpq.ca and pvoq.cpq.tls: the deployment CA and mutual-TLS contexts."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from pvoq.config.errors import ConfigError
from pvoq.config.model import DEFAULT_CIPHERS, CpqCertificate
from pvoq.cpq.ca import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    create_ca,
    issue_certificate,
    peer_common_name,
    peer_role,
)
from pvoq.cpq.tls import client_context, server_context

GATEWAY = "gw1.example.com"
MANAGER = "mgr.example.com"
IO_TIMEOUT_S = 10.0  # a safety net so a broken handshake fails instead of hanging


@dataclass(frozen=True)
class Deployment:
    """A CA directory and the CpqCertificate of each appliance issued by it."""

    ca_dir: Path
    certs: dict[str, CpqCertificate] = field(default_factory=dict)


def make_deployment(base: Path, *, name: str = "pvoq CPQ CA") -> Deployment:
    """Create a CA in *base* and issue a gateway and a manager certificate."""
    ca_dir = base / "ca"
    create_ca(ca_dir, name=name)
    deployment = Deployment(ca_dir)
    for hostname, role in ((GATEWAY, "gateway"), (MANAGER, "manager")):
        issued = issue_certificate(ca_dir, base / role, hostname=hostname, role=role,
                                   addresses=["127.0.0.1"])
        deployment.certs[role] = CpqCertificate(ca_dir / CA_CERT_FILE, issued.certificate,
                                                issued.private_key)
    return deployment


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    return make_deployment(tmp_path_factory.mktemp("deployment"))


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """A second deployment: same CA name, different key."""
    return make_deployment(tmp_path_factory.mktemp("foreign"))


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def name_value(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    (attribute,) = cert.subject.get_attributes_for_oid(oid)
    return str(attribute.value)


class TestCreateCa:
    def test_creates_cert_and_key(self, tmp_path: Path) -> None:
        """create_ca writes a self-signed CA certificate and its key."""
        create_ca(tmp_path / "ca", name="Test CA")
        cert = load_cert(tmp_path / "ca" / CA_CERT_FILE)
        assert cert.issuer == cert.subject
        assert name_value(cert, NameOID.COMMON_NAME) == "Test CA"
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        cert.verify_directly_issued_by(cert)

    def test_refuses_to_overwrite(self, tmp_path: Path) -> None:
        """A second create_ca in the same directory fails and keeps the first CA."""
        create_ca(tmp_path)
        before = (tmp_path / CA_CERT_FILE).read_bytes()
        with pytest.raises(FileExistsError):
            create_ca(tmp_path)
        assert (tmp_path / CA_CERT_FILE).read_bytes() == before

    def test_refuses_when_only_key_exists(self, tmp_path: Path) -> None:
        """A lone CA key is not overwritten either."""
        (tmp_path / CA_KEY_FILE).write_bytes(b"precious")
        with pytest.raises(FileExistsError):
            create_ca(tmp_path)
        assert (tmp_path / CA_KEY_FILE).read_bytes() == b"precious"

    def test_key_is_private(self, deployment: Deployment) -> None:
        """The CA key file has mode 0600."""
        assert stat.S_IMODE((deployment.ca_dir / CA_KEY_FILE).stat().st_mode) == 0o600


class TestIssueCertificate:
    def test_verifies_against_ca(self, deployment: Deployment) -> None:
        """An issued certificate is signed by the deployment CA."""
        ca = load_cert(deployment.ca_dir / CA_CERT_FILE)
        for cert in deployment.certs.values():
            load_cert(cert.certificate).verify_directly_issued_by(ca)

    def test_does_not_verify_against_other_ca(self, deployment: Deployment,
                                              foreign: Deployment) -> None:
        """A certificate of another CA (even of the same name) does not verify."""
        ca = load_cert(deployment.ca_dir / CA_CERT_FILE)
        other = load_cert(foreign.certs["gateway"].certificate)
        with pytest.raises(Exception):  # noqa: B017 (InvalidSignature or ValueError)
            other.verify_directly_issued_by(ca)

    def test_subject_names_host_and_role(self, deployment: Deployment) -> None:
        """The subject CN is the appliance hostname and the OU its role."""
        cert = load_cert(deployment.certs["gateway"].certificate)
        assert name_value(cert, NameOID.COMMON_NAME) == GATEWAY
        assert name_value(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == "gateway"

    def test_subject_alt_names(self, deployment: Deployment) -> None:
        """The SAN lists the hostname and the given addresses."""
        cert = load_cert(deployment.certs["manager"].certificate)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [MANAGER]
        assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    def test_usable_as_server_and_client(self, deployment: Deployment) -> None:
        """The certificate is for server and client authentication and is not a CA."""
        cert = load_cert(deployment.certs["gateway"].certificate)
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usage
        assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usage
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    def test_key_is_private(self, deployment: Deployment) -> None:
        """The issued private key file has mode 0600."""
        for cert in deployment.certs.values():
            assert stat.S_IMODE(cert.private_key.stat().st_mode) == 0o600

    def test_stem_names_the_files(self, deployment: Deployment, tmp_path: Path) -> None:
        """The stem names the certificate and key files."""
        issued = issue_certificate(deployment.ca_dir, tmp_path, hostname="gw9", role="gateway",
                                   stem="gw9")
        assert (issued.certificate.name, issued.private_key.name) == ("gw9.pem", "gw9.key")


class TestPeerFields:
    PEERCERT: dict[str, Any] = {
        "subject": ((("commonName", GATEWAY),), (("organizationalUnitName", "gateway"),)),
        "issuer": ((("commonName", "pvoq CPQ CA"),),),
    }

    def test_common_name(self) -> None:
        """peer_common_name reads the CN of a getpeercert() dict."""
        assert peer_common_name(self.PEERCERT) == GATEWAY

    def test_role(self) -> None:
        """peer_role reads the OU of a getpeercert() dict."""
        assert peer_role(self.PEERCERT) == "gateway"

    @pytest.mark.parametrize("peercert", [None, {}, {"subject": ()}])
    def test_no_certificate(self, peercert: dict[str, Any] | None) -> None:
        """Without a certificate (or a subject) there is no name and no role."""
        assert peer_common_name(peercert) is None
        assert peer_role(peercert) is None


@dataclass
class Side:
    """What one end of a handshake saw."""

    peercert: dict[str, Any] | None = None
    data: bytes | None = None
    error: BaseException | None = None


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[Side, Side]:
    """Run one TLS handshake over loopback; the server sends b"ok" once it completes."""
    server, client = Side(), Side()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(IO_TIMEOUT_S)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(IO_TIMEOUT_S)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                server.peercert = tls.getpeercert()
                tls.sendall(b"ok")
                tls.recv(1)  # wait for the client to close
        except (OSError, ssl.SSLError) as exc:
            server.error = exc

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S) as raw, \
                client_ctx.wrap_socket(raw) as tls:
            client.peercert = tls.getpeercert()
            client.data = tls.recv(2)
    except (OSError, ssl.SSLError) as exc:
        client.error = exc
    finally:
        thread.join()
        listener.close()
    return server, client


class TestTlsContexts:
    def test_contexts_build(self, deployment: Deployment) -> None:
        """Both contexts build from a CPQ certificate and verify peers."""
        server = server_context(deployment.certs["manager"], ciphers=DEFAULT_CIPHERS)
        client = client_context(deployment.certs["gateway"], ciphers=DEFAULT_CIPHERS)
        assert server.verify_mode == ssl.CERT_OPTIONAL
        assert client.verify_mode == ssl.CERT_REQUIRED
        assert server.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert client.minimum_version >= ssl.TLSVersion.TLSv1_2

    def test_bad_ciphers_name_the_setting(self, deployment: Deployment) -> None:
        """An unusable cipher list is a ConfigError naming its setting, outbound and inbound."""
        with pytest.raises(ConfigError) as info:
            client_context(deployment.certs["gateway"], ciphers="NO-SUCH-CIPHER")
        assert info.value.field == "ssl_config.outbound_ciphers"
        assert "NO-SUCH-CIPHER" in info.value.message
        with pytest.raises(ConfigError) as info:
            server_context(deployment.certs["manager"], ciphers="NO-SUCH-CIPHER")
        assert info.value.field == "ssl_config.inbound_ciphers"
        assert "NO-SUCH-CIPHER" in info.value.message

    def test_unloadable_certificate(self, tmp_path: Path, deployment: Deployment) -> None:
        """A certificate file that is not PEM is a ConfigError on cpq_certificate."""
        bad = tmp_path / "bad.pem"
        bad.write_text("not a certificate")
        cert = CpqCertificate(deployment.certs["gateway"].ca_certificate, bad,
                              deployment.certs["gateway"].private_key)
        with pytest.raises(ConfigError) as info:
            client_context(cert, ciphers=DEFAULT_CIPHERS)
        assert info.value.field == "config.cpq_certificate.certificate"
        assert info.value.message == f"the certificate {bad} holds no PEM certificate"


class TestMutualTls:
    def test_same_ca_handshake(self, deployment: Deployment) -> None:
        """Two certificates of one CA complete a handshake and each side sees the other's."""
        server, client = handshake(
            server_context(deployment.certs["manager"], ciphers=DEFAULT_CIPHERS),
            client_context(deployment.certs["gateway"], ciphers=DEFAULT_CIPHERS))
        assert server.error is None and client.error is None
        assert client.data == b"ok"
        assert (peer_common_name(server.peercert), peer_role(server.peercert)) == \
            (GATEWAY, "gateway")
        assert (peer_common_name(client.peercert), peer_role(client.peercert)) == \
            (MANAGER, "manager")

    def test_client_of_other_ca_is_refused(self, deployment: Deployment,
                                           foreign: Deployment) -> None:
        """A client certificate of another CA fails the server's handshake."""
        intruder = foreign.certs["gateway"]
        # The intruder trusts the real CA, so only the server's check can stop it.
        client_cert = CpqCertificate(deployment.certs["gateway"].ca_certificate,
                                     intruder.certificate, intruder.private_key)
        server, client = handshake(
            server_context(deployment.certs["manager"], ciphers=DEFAULT_CIPHERS),
            client_context(client_cert, ciphers=DEFAULT_CIPHERS))
        assert isinstance(server.error, ssl.SSLError)
        assert server.peercert is None
        assert client.data in (None, b"")  # TLS 1.3: the alert arrives after the handshake

    def test_server_of_other_ca_is_refused(self, deployment: Deployment,
                                           foreign: Deployment) -> None:
        """A server certificate of another CA fails the client's verification."""
        server, client = handshake(
            server_context(foreign.certs["manager"], ciphers=DEFAULT_CIPHERS),
            client_context(deployment.certs["gateway"], ciphers=DEFAULT_CIPHERS))
        assert isinstance(client.error, ssl.SSLCertVerificationError)
        assert client.data is None
