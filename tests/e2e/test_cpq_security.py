"""CPQ requires TLS with a certificate of the deployment's CPQ CA, both ways."""

from __future__ import annotations

import re
import smtplib
import ssl
from pathlib import Path

import pytest

from pvoq.config.template import ApplianceSpec
from pvoq.cpq.ca import create_ca, issue_certificate
from pvoq.deploy import init_appliance
from pvoq.testing.localdeploy import MANAGER, Deployment, wait_for


def _client_context(ca_file: Path, cert: Path | None = None, key: Path | None = None
                    ) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(ca_file))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


class TestCpqListener:
    def test_plaintext_mail_from_before_starttls_gets_530(self, running: Deployment) -> None:
        """MAIL FROM in plaintext on the cpq_listener is refused with 530."""
        with smtplib.SMTP("127.0.0.1", running.ports["manager_cpq"], timeout=10) as smtp:
            code, _ = smtp.ehlo("intruder.example")
            assert code == 250
            assert smtp.has_extn("starttls")
            assert not smtp.has_extn("xcpq")
            code, text = smtp.docmd("MAIL FROM:<a@b.example>")
            assert code == 530
            assert b"STARTTLS" in text

    def test_peer_without_a_certificate_is_refused(self, running: Deployment) -> None:
        """A TLS client that presents no certificate gets 554 to every command."""
        ca = running.root / "manager" / "certs" / "cpq-ca.pem"
        with smtplib.SMTP("127.0.0.1", running.ports["manager_cpq"], timeout=10) as smtp:
            smtp.starttls(context=_client_context(ca))
            smtp.ehlo("nocert.example")
            code, _ = smtp.docmd("MAIL FROM:<a@b.example>")
            assert code == 554
        log = "\n".join(running.mail_logs("manager"))
        assert "TLS failed: verify error: no certificate from client" in log

    def test_peer_with_a_certificate_from_another_ca_is_refused(
            self, running: Deployment, tmp_path: Path) -> None:
        """A valid certificate signed by another CA fails the handshake."""
        other_ca = create_ca(tmp_path / "other-ca")
        issued = issue_certificate(other_ca, tmp_path / "rogue", hostname="gw1.pvoq.test",
                                   role="gateway")
        ca = running.root / "manager" / "certs" / "cpq-ca.pem"
        ctx = _client_context(ca, issued.certificate, issued.private_key)
        refused = (ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)
        with pytest.raises(refused), smtplib.SMTP(
                "127.0.0.1", running.ports["manager_cpq"], timeout=10) as smtp:
            smtp.starttls(context=ctx)
            smtp.ehlo("rogue.example")
            smtp.docmd("MAIL FROM:<a@b.example>")
        assert running.quarantined() == []

    def test_gateway_refuses_a_manager_with_a_foreign_certificate(
            self, deployment: Deployment, tmp_path: Path) -> None:
        """The gateway keeps mail queued rather than hand it to an impostor manager."""
        dep = deployment
        rogue_dir = tmp_path / "rogue-manager"
        init_appliance(rogue_dir, ApplianceSpec(
            role="manager", hostname=MANAGER, serial="ROGUE", ip=dep.ip,
            cpq_port=dep.ports["manager_cpq"],
            gateways=[("gw1.pvoq.test", dep.ip, dep.ports["gateway_cpq"])]),
            ca_dir=tmp_path / "rogue-ca")
        dep.start_sink()
        dep.start_gateway()
        rogue = Deployment(tmp_path)
        rogue._spawn("rogue", ["manager", "run", "-c", str(rogue_dir / "pvoq.xml")])
        dep.procs["rogue"] = rogue.procs.pop("rogue")
        wait_for("the rogue manager", lambda: dep._port_open(dep.ports["manager_cpq"]))
        dep.send(subject="confidential", body="for the real manager only")
        wait_for("the TLS refusal in mail_logs", lambda: any(
            "TLS was required but could not be successfully negotiated" in line
            for line in dep.mail_logs("gateway")))
        log = "\n".join(dep.mail_logs("gateway"))
        assert re.search(r"DCID \d+ TLS failed: verify error: \w", log), log
        dep.stop("rogue")
        dep.start_manager()
        rows = wait_for("quarantined by the real manager", dep.quarantined, timeout_s=60)
        assert [m["subject"] for m in rows] == ["confidential"]


class TestHostAccessTable:
    def test_host_outside_relaylist_is_rejected_at_connect(self, running: Deployment) -> None:
        """A CPQ client not in RELAYLIST gets a 554 greeting, logged as REJECT by the HAT."""
        with pytest.raises(smtplib.SMTPConnectError) as caught:
            smtplib.SMTP("127.0.0.1", running.ports["manager_cpq"], timeout=10,
                         source_address=("127.0.0.2", 0))
        assert caught.value.smtp_code == 554
        log = wait_for("the REJECT line", lambda: (text := "\n".join(
            running.mail_logs("manager"))) and "REJECT SG" in text and text)
        assert re.search(r"New CPQ ICID (\d+) interface Management \(127\.0\.0\.1\) address "
                         r"127\.0\.0\.2 ", log)
        assert re.search(r"ICID \d+ REJECT SG ALL match ALL SBRS none", log)
