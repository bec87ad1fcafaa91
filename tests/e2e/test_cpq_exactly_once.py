"""A transfer retried after a lost `250` is acknowledged once more but stored once.

The test speaks CPQ itself, with a certificate of the deployment's CA, and cuts
the connection right after the end of DATA, before reading the reply: the
sender cannot know whether the receiver stored the message, so it retries.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from pathlib import Path

from pvoq.cpq import replies as cpq_replies
from pvoq.cpq.metadata import encode_chunks
from pvoq.testing.localdeploy import GATEWAY, Deployment, wait_for
from pvoq.testing.trace import relayed

BODY = (b"From: alice@sender.example\r\nTo: bob@example.com\r\n"
        b"Subject: exactly once\r\n\r\nOne copy, please.\r\n")


def _context(appliance_dir: Path) -> ssl.SSLContext:
    certs = appliance_dir / "certs"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(certs / "cpq-ca.pem"))
    ctx.load_cert_chain(str(certs / "cpq.pem"), str(certs / "cpq.key"))
    return ctx


def _meta(kind: str, transfer_id: str) -> dict:
    meta = {
        "v": 1, "kind": kind, "transfer_id": transfer_id,
        "origin": {"hostname": GATEWAY, "serial": "PVOQ-G-0001", "mid": 4242},
        "sender": "alice@sender.example",
        "recipients": [{"rid": 0, "address": "bob@example.com"}],
        "quarantines": [{"name": "Policy", "reason": "content filter:test", "stage": "content_filters"}],
        "received": time.time(), "size": len(BODY),
    }
    if kind == "release":
        meta["release"] = {"entry": 77, "stages": ["content_filters"]}
    return meta


def _transfer(port: int, ctx: ssl.SSLContext, meta: dict, *, cut: bool) -> tuple[int, bytes] | None:
    """One CPQ transaction; with *cut*, drop the connection right after the final dot."""
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=15)
    try:
        smtp.starttls(context=ctx)
        smtp.ehlo("test.pvoq.test")
        assert smtp.has_extn("xcpq")
        assert smtp.mail(meta["sender"])[0] == 250
        assert smtp.rcpt("bob@example.com")[0] == 250
        for chunk in encode_chunks(meta):
            assert smtp.docmd("XCPQ META", chunk)[0] == 250
        if cut:
            code, _ = smtp.docmd("DATA")
            assert code == 354
            smtp.sock.sendall(BODY + b".\r\n")
            smtp.sock.close()  # the 250 (or not) is never read
            return None
        code, text = smtp.data(BODY)
        smtp.quit()
        return code, text
    finally:
        smtp.close()


class TestExactlyOnce:
    def test_manager_stores_a_retried_transfer_once(self, running: Deployment) -> None:
        """A quarantine transfer cut after DATA and retried is stored exactly once."""
        ctx = _context(running.root / "gateway")
        meta = _meta("quarantine", "q-test-exactly-once-1")
        port = running.ports["manager_cpq"]
        _transfer(port, ctx, meta, cut=True)
        wait_for("the first copy stored", running.quarantined)
        code, text = _transfer(port, ctx, meta, cut=False)
        assert code == cpq_replies.ALREADY_STORED.code
        assert text.decode().startswith(cpq_replies.ALREADY_STORED.text.format(
            transfer_id="q-test-exactly-once-1", mid=""))
        rows = running.quarantined()
        assert len(rows) == 1 and rows[0]["subject"] == "exactly once"
        assert any("duplicate CPQ transfer q-test-exactly-once-1" in line
                   for line in running.mail_logs("manager"))

    def test_gateway_delivers_a_retried_release_once(self, running: Deployment) -> None:
        """A release cut after DATA and retried reaches the downstream host exactly once."""
        ctx = _context(running.root / "manager")
        meta = _meta("release", "r-test-exactly-once-1")
        port = running.ports["gateway_cpq"]
        _transfer(port, ctx, meta, cut=True)
        wait_for("the release delivered", running.delivered)
        code, text = _transfer(port, ctx, meta, cut=False)
        assert (code, text.decode()) == (cpq_replies.ALREADY_RECEIVED.code,
                                         cpq_replies.ALREADY_RECEIVED.text.format(
                                             transfer_id="r-test-exactly-once-1"))
        probe = running.send(subject="after", body="a later clean message")
        wait_for("the later message", lambda: len(running.delivered()) == 2)
        # The release came over CPQ as it was held; the probe through the public listener.
        first, second = [c for _, c in running.delivered()]
        assert (first, relayed(second)) == (BODY, probe)

    def test_a_gateway_may_not_send_releases(self, running: Deployment) -> None:
        """The gateway's cpq_listener refuses a release presented with a gateway certificate."""
        ctx = _context(running.root / "gateway")
        code, text = _transfer(running.ports["gateway_cpq"], ctx,
                               _meta("release", "r-test-wrong-role"), cut=False)
        assert (code, text.decode()) == cpq_replies.MANAGER_ONLY
        assert running.delivered() == []
