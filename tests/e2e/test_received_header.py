"""The gateway's `Received:` line and the log lines of each direction, on real processes.

Mail through the public listener reaches downstream with exactly one new
`Received:` line on top and otherwise byte-identical; quarantined mail keeps
that line (added once, at the gateway that received it) through the manager,
its release and a Send Copy, whose deliveries and arrivals are logged each in
its own words.
"""

from __future__ import annotations

import re
import smtplib
import ssl

from pvoq.testing.localdeploy import GATEWAY, Deployment, wait_for
from pvoq.testing.trace import relayed, split_received

STAMP = r"^\w{3} \w{3} {1,2}\d{1,2} \d\d:\d\d:\d\d \d{4} Info: "
DATE = r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}"


def _log(dep: Deployment, role: str) -> str:
    return "\n".join(dep.mail_logs(role))


def _line(dep: Deployment, role: str, pattern: str) -> re.Match[str]:
    """The first *role* mail_logs line matching *pattern* (after the stamp); bounded wait."""
    found = wait_for(f"{pattern!r} in the {role}'s mail_logs",
                     lambda: re.search(STAMP + pattern + "$", _log(dep, role), re.M))
    assert isinstance(found, re.Match)
    return found


class TestPublicListener:
    def test_clean_mail_gets_one_received_line_and_is_otherwise_unchanged(
            self, running: Deployment) -> None:
        sent = (b"From: alice@sender.example\r\nSubject: hello\r\n"
                b"DKIM-Signature: v=1; a=rsa-sha256; d=sender.example; s=s; b=x\r\n"
                b"\r\nclean\r\n.leading dot\r\n\r\n")
        with smtplib.SMTP(running.ip, running.ports["gateway_smtp"], timeout=30,
                          local_hostname="client.example") as smtp:
            smtp.sendmail("alice@sender.example", ["bob@example.com"], sent)
        ((_, content),) = wait_for("clean mail downstream", running.delivered)
        assert relayed(content) == sent
        value, _ = split_received(content)
        mid = _line(running, "gateway", r"MID (\d+) queued for delivery").group(1)
        assert re.fullmatch(
            rf"from client\.example \(unknown \[127\.0\.0\.1\]\) by {re.escape(GATEWAY)} "
            rf"with ESMTP id {mid} for <bob@example\.com>; {DATE}", value), value
        assert content.count(b"\r\nReceived: ") == 0  # one line, on top

    def test_starttls_logs_tls_success_and_the_line_says_esmtps(
            self, deployment: Deployment) -> None:
        certs = deployment.root / "gateway" / "certs"
        marker = "<listener_name>IncomingMail</listener_name>\n"
        text = deployment.gateway_config.read_text()
        deployment.gateway_config.write_text(text.replace(
            marker, marker + f"    <certificate>{certs / 'cpq.pem'}</certificate>\n"
            f"    <private_key>{certs / 'cpq.key'}</private_key>\n", 1))
        deployment.start_sink()
        deployment.start_gateway()
        client = ssl.create_default_context(cafile=str(certs / "cpq-ca.pem"))
        client.check_hostname = False
        message = b"Subject: over tls\r\n\r\nencrypted\r\n"
        with smtplib.SMTP(deployment.ip, deployment.ports["gateway_smtp"], timeout=30) as smtp:
            smtp.ehlo("client.example")
            smtp.starttls(context=client)
            smtp.ehlo("client.example")
            cipher, protocol, _ = smtp.sock.cipher()  # type: ignore[union-attr]
            smtp.sendmail("a@sender.example", ["bob@example.com"], message)
        ((_, content),) = wait_for("the message", deployment.delivered)
        assert relayed(content) == message
        value, _ = split_received(content)
        assert value.startswith(f"from client.example (unknown [127.0.0.1]) (using {protocol} "
                                f"with cipher {cipher} (")
        assert f" by {GATEWAY} with ESMTPS id " in value
        _line(deployment, "gateway", rf"ICID \d+ TLS success protocol {re.escape(protocol)} "
                                     rf"cipher {re.escape(cipher)}")


class TestThroughTheManager:
    def test_release_and_copy_carry_the_gateways_line_once_and_log_their_direction(
            self, running: Deployment) -> None:
        sent = running.send(subject="Confidential numbers", body="figures")
        record = wait_for("the message in quarantine", running.quarantined)[0]
        running.admin(running.manager_config, "quarantine.copy",
                      {"mid": record["id"], "address": "audit@example.com"})
        copy_ = wait_for("the copy downstream", running.delivered)[0]
        running.admin(running.manager_config, "quarantine.release", {"mid": record["id"]})
        wait_for("the release downstream", lambda: len(running.delivered()) == 2)
        (env_copy, copied), (env_release, released) = running.delivered()
        assert (env_copy, copied) == copy_
        assert env_copy["rcpt_tos"] == ["audit@example.com"]
        assert env_release["rcpt_tos"] == ["bob@example.com"]
        # The line the gateway wrote when it received the message, byte for byte: the
        # transfers to and from the manager add none and change nothing.
        assert relayed(released) == sent and released == copied
        origin_mid = _line(running, "gateway", r"MID (\d+) quarantined to \"Policy\" .*").group(1)
        assert f" id {origin_mid} for <bob@example.com>;" in split_received(released)[0]

        # Each direction in its own words.
        _line(running, "gateway", r"Delivery start DCID \d+ MID \d+ to RID \[0\] to "
                                  r"Centralized Policy Quarantine")
        _line(running, "gateway", r"Message done DCID \d+ MID \d+ to RID \[0\] "
                                  r"\(centralized policy quarantine\)")
        copy_mid = _line(running, "manager", r"MID \d+ copy queued to audit@example\.com as "
                                             r"MID (\d+)").group(1)
        release_mid = record["id"]
        _line(running, "manager", rf"Delivery start DCID \d+ MID {copy_mid} to RID \[0\] as a "
                                  r"copy from Centralized Policy Quarantine")
        _line(running, "manager", rf"Message done DCID \d+ MID {copy_mid} to RID \[0\] "
                                  r"\(copy from centralized policy quarantine\)")
        _line(running, "manager", rf"Delivery start DCID \d+ MID {release_mid} to RID \[0\] on "
                                  r"release from Centralized Policy Quarantine")
        _line(running, "manager", rf"Message done DCID \d+ MID {release_mid} to RID \[0\] "
                                  r"\(release from centralized policy quarantine\)")
        assert "to Centralized Policy Quarantine" not in _log(running, "manager")
        _line(running, "gateway", rf"MID \d+ received from the SMA 127\.0\.0\.1 \(MID "
                                  rf"originally {origin_mid}\) as a copy from central quarantine")
        _line(running, "gateway", rf"MID \d+ received from the SMA 127\.0\.0\.1 \(MID "
                                  rf"originally {origin_mid}\) on release from central "
                                  r"quarantine")
