"""The cpq_listener's HAT decides before TLS: a valid CPQ certificate does not open it."""

from __future__ import annotations

import re
import smtplib
import ssl
import subprocess
import sys

import pytest

from pvoq.smtp import replies
from pvoq.testing.localdeploy import Deployment, wait_for


def _gateway_tls(dep: Deployment) -> ssl.SSLContext:
    """A client context with the deployment's real gateway certificate."""
    certs = dep.root / "gateway" / "certs"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(certs / "cpq-ca.pem"))
    ctx.load_cert_chain(str(certs / "cpq.pem"), str(certs / "cpq.key"))
    return ctx


def _connect(dep: Deployment, source: str) -> smtplib.SMTP:
    return smtplib.SMTP(dep.ip, dep.ports["manager_cpq"], timeout=10,
                        source_address=(source, 0))


@pytest.fixture
def manager(deployment: Deployment) -> Deployment:
    deployment.start_manager()
    return deployment


class TestRelaylistWithCertificate:
    def test_inside_relaylist_the_certificate_opens_cpq(self, manager: Deployment) -> None:
        """From 127.0.0.1 (in RELAYLIST) the gateway certificate gets STARTTLS and XCPQ."""
        with _connect(manager, "127.0.0.1") as smtp:
            smtp.starttls(context=_gateway_tls(manager))
            smtp.ehlo("gw1.pvoq.test")
            assert smtp.has_extn("xcpq")

    def test_outside_relaylist_a_valid_certificate_is_refused_at_connect(
            self, manager: Deployment) -> None:
        """From 127.0.0.2 the same certificate never gets to TLS: 554 greeting, REJECT logged."""
        with pytest.raises(smtplib.SMTPConnectError) as caught, \
                _connect(manager, "127.0.0.2") as smtp:
            smtp.starttls(context=_gateway_tls(manager))
        assert caught.value.smtp_code == replies.HAT_REJECT.code
        assert replies.ACCESS_DENIED.text.encode() in caught.value.smtp_error
        icid = wait_for("the CPQ ICID", lambda: re.search(
            r"New CPQ ICID (\d+) interface Management \(127\.0\.0\.1\) address "
            r"127\.0\.0\.2 reverse dns host unknown verified no",
            "\n".join(manager.mail_logs("manager"))))
        log = wait_for("the ICID closed", lambda: (text := "\n".join(
            manager.mail_logs("manager"))) and f"ICID {icid[1]} close" in text and text)
        assert f"ICID {icid[1]} REJECT SG ALL match ALL SBRS none" in log
        assert f"ICID {icid[1]} TLS" not in log
        assert manager.quarantined() == []

    def test_adding_the_host_to_relaylist_and_reloading_lets_it_in(
            self, manager: Deployment) -> None:
        """After RELAYLIST gains 127.0.0.2 and a reload, the next connection is relayed."""
        text = manager.manager_config.read_text()
        manager.manager_config.write_text(text.replace("RELAYLIST:\n  127.0.0.1\n",
                                                       "RELAYLIST:\n  127.0.0.1\n  127.0.0.2\n"))
        done = subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c",
                               str(manager.manager_config), "reload"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        with _connect(manager, "127.0.0.2") as smtp:
            smtp.starttls(context=_gateway_tls(manager))
            smtp.ehlo("gw1.pvoq.test")
            assert smtp.has_extn("xcpq")
        assert wait_for("the RELAY decision", lambda: "RELAY SG RELAYLIST match 127.0.0.2 "
                        "SBRS none" in "\n".join(manager.mail_logs("manager")))


class TestListenerListing:
    def test_cpq_listener_is_hidden_unless_all(self, deployment: Deployment) -> None:
        """`listeners` omits the hidden cpq_listener; `listeners --all` shows it with RELAYLIST."""
        deployment.start_sink()
        deployment.start_gateway()

        def listeners(*extra: str) -> str:
            done = subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c",
                                   str(deployment.gateway_config), "listeners", *extra],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            return done.stdout

        plain = listeners()
        assert "IncomingMail (Incoming Mail: 127.0.0.1/" in plain
        assert "cpq_listener" not in plain
        everything = listeners("--all")
        port = deployment.ports["gateway_cpq"]
        assert (f"cpq_listener (Incoming Mail: 127.0.0.1/{port}) CPQ private (hidden)  "
                "sender groups: RELAYLIST, ALL") in everything
