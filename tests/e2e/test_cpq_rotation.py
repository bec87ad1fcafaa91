"""Certificate rotation without downtime: a new CPQ certificate is served after a reload."""

from __future__ import annotations

import signal
import smtplib
import ssl

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pvoq.cpq.ca import issue_certificate
from pvoq.testing.localdeploy import MANAGER, Deployment, wait_for


def served_certificate(dep: Deployment) -> bytes:
    certs = dep.root / "gateway" / "certs"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(certs / "cpq-ca.pem"))
    ctx.load_cert_chain(str(certs / "cpq.pem"), str(certs / "cpq.key"))
    with smtplib.SMTP("127.0.0.1", dep.ports["manager_cpq"], timeout=10) as smtp:
        smtp.starttls(context=ctx)
        der = smtp.sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def file_der(path) -> bytes:
    return x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)


class TestRotation:
    def test_sighup_serves_the_new_certificate_and_mail_keeps_flowing(
            self, running: Deployment) -> None:
        """After SIGHUP the manager presents the re-issued certificate; no process restarts."""
        certs = running.root / "manager" / "certs"
        before = served_certificate(running)
        assert before == file_der(certs / "cpq.pem")
        pid = running.procs["manager"].pid
        issue_certificate(running.root / "ca", certs, hostname=MANAGER, role="manager",
                          addresses=["127.0.0.1"])
        assert served_certificate(running) == before  # nothing changes until the reload
        running.procs["manager"].send_signal(signal.SIGHUP)
        wait_for("the reload", lambda: any("Configuration reloaded" in line
                                           for line in running.mail_logs("manager")))
        after = served_certificate(running)
        assert after != before and after == file_der(certs / "cpq.pem")
        assert running.procs["manager"].pid == pid and running.procs["manager"].poll() is None
        running.send(subject="confidential", body="after rotation")
        assert wait_for("quarantined after rotation", running.quarantined)
