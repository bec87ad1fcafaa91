"""Hard bounces: per-recipient results and a DSN to the envelope sender."""

from __future__ import annotations

from email import message_from_bytes

from pvoq.testing.localdeploy import Deployment, wait_for
from pvoq.testing.trace import relayed


class TestBounce:
    def test_partial_refusal_delivers_the_rest_and_returns_a_dsn(
            self, running: Deployment) -> None:
        """One recipient refused with 550: the other is delivered, the sender gets a DSN."""
        import smtplib
        wire = (b"From: alice@sender.example\r\nTo: bob@example.com, reject-me@example.com\r\n"
                b"Subject: two recipients\r\n\r\nHello both.\r\n")
        with smtplib.SMTP("127.0.0.1", running.ports["gateway_smtp"], timeout=30) as smtp:
            smtp.sendmail("alice@sender.example", ["bob@example.com", "reject-me@example.com"],
                          wire)
        arrived = wait_for("the message and the DSN", lambda: len(running.delivered()) >= 2 and
                           running.delivered(), timeout_s=60)
        by_rcpt = {tuple(env["rcpt_tos"]): (env, content) for env, content in arrived}
        assert relayed(by_rcpt[("bob@example.com",)][1]) == wire
        env, dsn = by_rcpt[("alice@sender.example",)]
        assert env["mail_from"] in ("", "<>")  # the null sender
        report = message_from_bytes(dsn)
        assert report.get_content_type() == "multipart/report"
        assert report.get_param("report-type") == "delivery-status"
        status = next(p for p in report.walk()
                      if p.get_content_type() == "message/delivery-status")
        text = status.as_string()
        assert "Final-Recipient: rfc822; reject-me@example.com" in text
        assert "Status: 5.1.1" in text
        assert "Action: failed" in text
        log = "\n".join(running.mail_logs("gateway"))
        assert "Bounced: DCID" in log and "to RID [1] - 550 5.1.1" in log
        assert "DSN for MID" in log
