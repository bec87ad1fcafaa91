"""The seed's TLS failure: anonymous ciphers on both sides, then `:-aNULL` and a reload."""

from __future__ import annotations

import re
from pathlib import Path

from pvoq.testing.localdeploy import Deployment, wait_for

ANONYMOUS_FIRST = "aNULL:HIGH:@SECLEVEL=0"


def set_ciphers(config: Path, tag: str, value: str) -> None:
    text = config.read_text()
    text, n = re.subn(rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", text)
    assert n == 1
    config.write_text(text)


class TestAnonymousCiphers:
    def test_no_certificate_from_server_then_recovery_after_minus_anull(
            self, deployment: Deployment) -> None:
        """Anonymous TLS is refused with the seed's two lines; `:-aNULL` plus reload delivers."""
        dep = deployment
        set_ciphers(dep.manager_config, "inbound_ciphers", ANONYMOUS_FIRST)
        set_ciphers(dep.gateway_config, "outbound_ciphers", ANONYMOUS_FIRST)
        dep.start()
        dep.send(subject="confidential", body="must not travel without a certificate")

        def failure() -> re.Match[str] | None:
            return re.search(
                r"^\w{3} \w{3} {1,2}\d{1,2} [\d:]{8} \d{4} Info: DCID (\d+) TLS failed: verify "
                r"error: no certificate from server\n\w{3} \w{3} {1,2}\d{1,2} [\d:]{8} \d{4} "
                r"Info: DCID \1 TLS was required but could not be successfully negotiated$",
                "\n".join(dep.mail_logs("gateway")), re.M)

        assert wait_for("the seed's TLS failure lines", failure)
        status = dep.admin(dep.gateway_config, "status")["data"]
        assert status["messages_in_cpq_host"] == 1
        assert dep.quarantined() == []
        assert not any("Delivery start" in line for line in dep.mail_logs("gateway"))

        set_ciphers(dep.gateway_config, "outbound_ciphers", ANONYMOUS_FIRST + ":-aNULL")
        reply = dep.admin(dep.gateway_config, "reload")
        assert "reloaded" in reply["text"]
        dep.admin(dep.gateway_config, "delivernow", {"host": "the.cpq.host"})
        rows = wait_for("the message on the manager", dep.quarantined)
        assert [m["subject"] for m in rows] == ["confidential"]
        assert any(re.search(r"DCID \d+ TLS success protocol TLSv1\.2 cipher \S+ the\.cpq\.host",
                             line) for line in dep.mail_logs("gateway"))

    def test_a_broken_reload_keeps_the_running_configuration(
            self, running: Deployment) -> None:
        """A reload of an unusable cipher list is refused; mail keeps flowing on the old one."""
        set_ciphers(running.gateway_config, "outbound_ciphers", "NO-SUCH-CIPHER")
        from pvoq.testing.localdeploy import DeploymentError
        try:
            running.admin(running.gateway_config, "reload")
        except DeploymentError as exc:
            assert "ssl_config.outbound_ciphers" in str(exc)
        else:
            raise AssertionError("the reload was not refused")
        assert any("Configuration reload refused" in line
                   for line in running.mail_logs("gateway"))
        running.send(subject="confidential", body="still flows")
        assert wait_for("quarantined", running.quarantined)


class TestListenerCiphers:
    def test_a_listener_cipher_list_overrides_the_inbound_one(
            self, deployment: Deployment) -> None:
        """`<ssl_ciphers>` on the cpq_listener alone makes the seed's anonymous failure happen."""
        dep = deployment
        config = dep.manager_config
        marker = "<listener_name>cpq_listener</listener_name>\n"
        text = config.read_text()
        assert marker in text
        config.write_text(text.replace(
            marker, marker + f"    <ssl_ciphers>{ANONYMOUS_FIRST}</ssl_ciphers>\n", 1))
        set_ciphers(dep.gateway_config, "outbound_ciphers", ANONYMOUS_FIRST)
        dep.start()
        dep.send(subject="confidential", body="x")
        assert wait_for("the refusal", lambda: any(
            "TLS failed: verify error: no certificate from server" in line
            for line in dep.mail_logs("gateway")))
        assert dep.quarantined() == []
