"""Clients nobody here wrote, against a cpq_listener: swaks and openssl s_client (BDAT too)."""

from __future__ import annotations

import re
import shutil
import subprocess

from pvoq.cpq import replies as cpq_replies
from pvoq.cpq.metadata import encode_chunks
from pvoq.testing.localdeploy import Deployment, quarantine_metadata


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (.ci/run installs it: apt-get install {name})"
    return path


class TestSwaks:
    def test_banner_starttls_and_no_relay_without_a_cpq_certificate(
            self, running: Deployment) -> None:
        """swaks sees the 220 banner and STARTTLS, and is refused without a client certificate."""
        port = running.ports["manager_cpq"]
        result = subprocess.run(
            [_tool("swaks"), "--server", f"127.0.0.1:{port}", "--from", "a@sender.example",
             "--to", "bob@example.com", "--tls", "--helo", "swaks.example",
             "--timeout", "20"], capture_output=True, text=True, timeout=60)
        transcript = result.stdout + result.stderr
        assert "<-  220 manager.pvoq.test" in transcript
        assert "250-STARTTLS" in transcript
        assert "<-  220 Ready to start TLS" in transcript
        assert "554 Command refused due to lack of security" in transcript
        assert result.returncode != 0
        assert running.quarantined() == []

    def test_with_a_cpq_certificate_mail_without_metadata_is_refused(
            self, running: Deployment) -> None:
        """With a deployment certificate, swaks gets XCPQ offered but DATA needs metadata."""
        certs = running.root / "gateway" / "certs"
        port = running.ports["manager_cpq"]
        result = subprocess.run(
            [_tool("swaks"), "--server", f"127.0.0.1:{port}", "--from", "a@sender.example",
             "--to", "bob@example.com", "--tls", "--tls-cert", str(certs / "cpq.pem"),
             "--tls-key", str(certs / "cpq.key"), "--helo", "swaks.example",
             "--timeout", "20"], capture_output=True, text=True, timeout=60)
        transcript = result.stdout + result.stderr
        assert cpq_replies.XCPQ_KEYWORD.more() in transcript
        assert cpq_replies.METADATA_REFUSED.format(reason="no XCPQ META was sent") in transcript
        assert running.quarantined() == []


class TestOpensslClient:
    def test_s_client_verifies_the_cpq_certificate_over_starttls(
            self, running: Deployment) -> None:
        """openssl s_client -starttls smtp sees the manager's CPQ certificate, verified."""
        ca = running.root / "manager" / "certs" / "cpq-ca.pem"
        port = running.ports["manager_cpq"]
        result = subprocess.run(
            [_tool("openssl"), "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
             "-CAfile", str(ca), "-verify_return_error", "-servername", "manager.pvoq.test"],
            input="EHLO openssl.example\r\nQUIT\r\n", capture_output=True, text=True,
            timeout=60)
        out = result.stdout + result.stderr
        assert "CN = manager.pvoq.test" in out or "CN=manager.pvoq.test" in out
        assert "Verify return code: 0 (ok)" in out
        assert "pvoq CPQ CA" in out

    def test_s_client_pipelines_two_bdat_transfers_with_a_gateway_certificate(
            self, running: Deployment) -> None:
        """A client nobody here wrote sends two whole transfers by BDAT (RFC 3030) in one
        go, the second without waiting for the first's reply: both are stored, and the
        replies come back in order, each transfer's final 250 after its own commands."""
        certs = running.root / "gateway" / "certs"
        port = running.ports["manager_cpq"]
        script = b"EHLO gw.openssl.example\r\n"
        for n in (1, 2):
            body = (f"From: alice@sender.example\r\nTo: bob@example.com\r\n"
                    f"Subject: bdat interop {n}\r\n\r\nsent by openssl\r\n").encode()
            meta = quarantine_metadata(f"interop-bdat-{n:04d}", n, len(body),
                                       reason="content filter:interop", received=1700000000.0)
            script += b"MAIL FROM:<alice@sender.example>\r\nRCPT TO:<bob@example.com>\r\n"
            script += b"".join(f"XCPQ META {c}\r\n".encode() for c in encode_chunks(meta))
            script += f"BDAT {len(body)} LAST\r\n".encode() + body
        script += b"QUIT\r\n"
        result = subprocess.run(
            [_tool("openssl"), "s_client", "-starttls", "smtp", "-connect", f"127.0.0.1:{port}",
             "-cert", str(certs / "cpq.pem"), "-key", str(certs / "cpq.key"),
             "-CAfile", str(certs / "cpq-ca.pem"), "-quiet", "-ign_eof"],
            input=script, capture_output=True, timeout=60)
        out = result.stdout.decode("ascii", "replace")
        assert "250-CHUNKING" in out, out
        finals = list(re.finditer(r"250 2\.0\.0 Ok: Message \d+ accepted", out))
        assert len(finals) == 2, out
        # the second transfer's MAIL is answered after the first one's final reply
        assert finals[0].end() < out.find("250 2.1.0 Sender ok", finals[0].end()) \
            < finals[1].start()
        assert out.rstrip().endswith("221 Bye"), out
        subjects = sorted(m["subject"] for m in running.quarantined())
        assert subjects == ["bdat interop 1", "bdat interop 2"]
