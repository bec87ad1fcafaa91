"""Mail-flow policy parameters of the HAT, enforced on a running gateway's public listener."""

from __future__ import annotations

import signal
import smtplib
import subprocess
import sys

import pytest

from pvoq.smtp import replies
from pvoq.testing.localdeploy import Deployment, wait_for


def _set_policy(dep: Deployment, params: str) -> None:
    """Give the public listener's $ACCEPTED policy *params* and reload the gateway."""
    text = dep.gateway_config.read_text()
    marker = "$ACCEPTED\n  ACCEPT {"
    start = text.index(marker) + len(marker) - 1
    end = text.index("}", start) + 1
    dep.gateway_config.write_text(text[:start] + "{" + params + "}" + text[end:])
    done = subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(dep.gateway_config),
                           "reload"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def gateway(deployment: Deployment) -> Deployment:
    deployment.start_sink()
    deployment.start_gateway()
    return deployment


def _smtp(dep: Deployment) -> smtplib.SMTP:
    return smtplib.SMTP(dep.ip, dep.ports["gateway_smtp"], timeout=10)


def _log(dep: Deployment) -> str:
    return "\n".join(dep.mail_logs("gateway"))


def _logged(dep: Deployment, text: str) -> bool:
    """Wait (bounded) until *text* is in the gateway's mail_logs: lines are flushed per turn."""
    return bool(wait_for(f"{text!r} in mail_logs", lambda: text in _log(dep)))


class TestPolicyParameters:
    def test_max_rcpts_per_msg_defers_the_extra_recipient(self, gateway: Deployment) -> None:
        """The recipient beyond max_rcpts_per_msg gets 452 and a log line."""
        _set_policy(gateway, "max_rcpts_per_msg = 2")
        with _smtp(gateway) as smtp:
            smtp.ehlo("client.example")
            assert smtp.mail("a@sender.example")[0] == 250
            assert smtp.rcpt("b1@example.com")[0] == 250
            assert smtp.rcpt("b2@example.com")[0] == 250
            code, text = smtp.rcpt("b3@example.com")
            assert (code, text.decode()) == replies.TOO_MANY_RECIPIENTS
        assert _logged(gateway, "To: <b3@example.com> Rejected: max_rcpts_per_msg 2 reached "
                                "(policy $ACCEPTED)")

    def test_max_msg_size_is_advertised_and_enforced(self, gateway: Deployment) -> None:
        """EHLO announces the policy's SIZE and a larger message is refused with 552."""
        _set_policy(gateway, "max_msg_size = 2000")
        with _smtp(gateway) as smtp:
            smtp.ehlo("client.example")
            assert smtp.esmtp_features["size"] == "2000"
            with pytest.raises(smtplib.SMTPSenderRefused) as caught:
                smtp.sendmail("a@sender.example", ["b@example.com"],
                              b"Subject: big\r\n\r\n" + b"x" * 5000 + b"\r\n")
            assert caught.value.smtp_code == 552

    def test_max_conn_per_ip_refuses_a_second_connection(self, gateway: Deployment) -> None:
        """With max_conn_per_ip 1, a second concurrent connection gets 421 and is logged."""
        _set_policy(gateway, "max_conn_per_ip = 1")
        with _smtp(gateway) as first:
            assert first.ehlo("one.example")[0] == 250
            with pytest.raises(smtplib.SMTPConnectError) as caught:
                _smtp(gateway)
            assert (caught.value.smtp_code, caught.value.smtp_error.decode()) == \
                replies.TOO_MANY_FROM_HOST
        assert _logged(gateway, "concurrent connections from 127.0.0.1 (policy $ACCEPTED "
                                "max_conn_per_ip 1)")
        wait_for("the first connection to close", lambda: _log(gateway).count(" close") >= 2)
        with _smtp(gateway) as again:
            assert again.ehlo("two.example")[0] == 250

    def test_tls_required_without_a_certificate_refuses_mail(self, gateway: Deployment) -> None:
        """A policy requiring TLS on a listener without a certificate never takes mail."""
        _set_policy(gateway, "tls = required")
        with _smtp(gateway) as smtp:
            smtp.ehlo("client.example")
            assert not smtp.has_extn("starttls")
            code, text = smtp.mail("a@sender.example")
            assert (code, text.decode()) == replies.TLS_UNAVAILABLE  # temporary: the sender keeps the mail until TLS is fixed
        assert _logged(gateway, "TLS required by policy $ACCEPTED but listener IncomingMail "
                                "has no certificate")

    def test_a_bad_parameter_is_refused_on_sighup(self, gateway: Deployment) -> None:
        """`max_rcpts_per_msg = none` is refused with its line; the old policy keeps running."""
        _set_policy(gateway, "max_rcpts_per_msg = 2")
        text = gateway.gateway_config.read_text()
        gateway.gateway_config.write_text(text.replace("max_rcpts_per_msg = 2",
                                                       "max_rcpts_per_msg = none"))
        gateway.procs["gateway"].send_signal(signal.SIGHUP)
        line = wait_for("the refusal", lambda: next(
            (x for x in gateway.mail_logs("gateway") if "reload refused" in x), None))
        assert "hat.$ACCEPTED.max_rcpts_per_msg: max_rcpts_per_msg must be a positive " \
               "integer, not 'none'" in line
        with _smtp(gateway) as smtp:
            smtp.ehlo("client.example")
            smtp.mail("a@sender.example")
            assert [smtp.rcpt(f"b{n}@example.com")[0] for n in range(3)] == [250, 250, 452]


class TestPublicStartTls:
    def test_a_listener_with_a_certificate_offers_starttls_and_policy_can_require_it(
            self, deployment: Deployment) -> None:
        """With <certificate>, STARTTLS is offered; `tls = required` then means 530 until it."""
        import ssl
        certs = deployment.root / "gateway" / "certs"
        marker = "<listener_name>IncomingMail</listener_name>\n"
        text = deployment.gateway_config.read_text()
        deployment.gateway_config.write_text(text.replace(
            marker, marker + f"    <certificate>{certs / 'cpq.pem'}</certificate>\n"
            f"    <private_key>{certs / 'cpq.key'}</private_key>\n", 1))
        deployment.start_sink()
        deployment.start_gateway()
        _set_policy(deployment, "tls = required")
        client = ssl.create_default_context(cafile=str(certs / "cpq-ca.pem"))
        client.check_hostname = False
        with _smtp(deployment) as smtp:
            smtp.ehlo("client.example")
            assert smtp.has_extn("starttls")
            assert smtp.mail("a@sender.example")[0] == 530
            smtp.rset()
            smtp.starttls(context=client)
            smtp.ehlo("client.example")
            smtp.sendmail("a@sender.example", ["bob@example.com"],
                          b"Subject: over tls\r\n\r\nencrypted\r\n")
        delivered = wait_for("the message", deployment.delivered)
        assert b"Subject: over tls" in delivered[0][1]


class TestReverseDns:
    def test_a_hostname_sender_group_matches_a_verified_reverse_name(
            self, deployment: Deployment) -> None:
        """With a hostname member, the connection's PTR name is looked up, verified and used."""
        text = deployment.gateway_config.read_text()
        start = text.index("<listener_name>IncomingMail</listener_name>")
        hat_start = text.index("<hat>", start) + len("<hat>")
        hat_end = text.index("</hat>", hat_start)
        hat = ("\n$ACCEPTED\n  ACCEPT {}\n$BLOCKED\n  REJECT {}\nLOCALNAMES:\n  localhost\n"
               "    $ACCEPTED (By verified name)\nALL\n  $BLOCKED (Everyone else)\n  ")
        deployment.gateway_config.write_text(text[:hat_start] + hat + text[hat_end:])
        deployment.start_sink()
        deployment.start_gateway()
        with _smtp(deployment) as smtp:
            assert smtp.ehlo("client.example")[0] == 250
        assert _logged(deployment, "address 127.0.0.1 reverse dns host localhost verified yes")
        assert _logged(deployment, "ACCEPT SG LOCALNAMES match localhost SBRS none")
