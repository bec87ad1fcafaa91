"""Tests for pvoq.delivery.dsn: the RFC 3464 report, parsed back with the email package."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime

import pytest

from pvoq.delivery.dsn import build_dsn, status_of

ORIGINAL = (b"From: Alice <alice@example.org>\r\nTo: bob@example.com, carol@example.com\r\n"
            b"Subject: quarterly report\r\nMessage-ID: <q1@example.org>\r\n\r\n"
            b"Body line that must not be attached.\r\n")
FAILURES = [("bob@example.com", "5.1.1", "550 5.1.1 <bob@example.com>: no such user"),
            ("carol@example.com", "4.4.7", "delivery time expired")]
RECEIVED = 1_700_000_000.0
NOW = 1_700_086_400.0


def dsn(**overrides: object) -> EmailMessage:
    kwargs: dict[str, object] = dict(reporting_host="gw1.example.com",
                                     sender="alice@example.org", original_mid=42,
                                     received=RECEIVED, failures=FAILURES, original=ORIGINAL,
                                     now=NOW)
    kwargs.update(overrides)
    raw = build_dsn(**kwargs)  # type: ignore[arg-type]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_multipart_report_of_delivery_status() -> None:
    message = dsn()
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    parts = message.get_payload()
    assert isinstance(parts, list)
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert message.defects == []


def test_envelope_headers() -> None:
    message = dsn()
    assert [a.addr_spec for a in message["To"].addresses] == ["alice@example.org"]
    assert message["From"].addresses[0].addr_spec == "MAILER-DAEMON@gw1.example.com"
    assert message["Subject"] == "Delivery Status Notification (Failure)"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Message-ID"].endswith("@gw1.example.com>")
    assert parsedate_to_datetime(message["Date"]).timestamp() == NOW


def test_human_readable_part_names_each_recipient() -> None:
    text = dsn().get_payload()[0].get_content()  # type: ignore[index]
    assert "gw1.example.com" in text
    for rcpt, _, diag in FAILURES:
        assert f"<{rcpt}>: {diag}" in text


def delivery_status(message: Message) -> list[Message]:
    part = message.get_payload()[1]  # type: ignore[index]
    blocks = part.get_payload()
    assert isinstance(blocks, list)
    return blocks


def test_per_message_fields() -> None:
    per_message = delivery_status(dsn())[0]
    assert per_message["Reporting-MTA"] == "dns; gw1.example.com"
    assert per_message["X-Pvoq-MID"] == "42"
    assert parsedate_to_datetime(per_message["Arrival-Date"]).timestamp() == RECEIVED


def test_per_recipient_fields() -> None:
    per_recipient = delivery_status(dsn())[1:]
    assert [(b["Final-Recipient"], b["Action"], b["Status"], b["Diagnostic-Code"])
            for b in per_recipient] == [
        (f"rfc822; {rcpt}", "failed", code, f"smtp; {diag}") for rcpt, code, diag in FAILURES]


def test_original_headers_attached_without_the_body() -> None:
    attached = dsn().get_payload()[2]  # type: ignore[index]
    text = attached.get_payload(decode=True).decode()
    headers = email.message_from_string(text, policy=email.policy.default)
    assert headers["Subject"] == "quarterly report"
    assert headers["Message-ID"] == "<q1@example.org>"
    assert headers["To"] == "bob@example.com, carol@example.com"
    assert "must not be attached" not in text


def test_lines_end_in_crlf() -> None:
    raw = build_dsn(reporting_host="gw1.example.com", sender="alice@example.org",
                    original_mid=42, received=RECEIVED, failures=FAILURES, original=ORIGINAL,
                    now=NOW)
    assert b"\n" not in raw.replace(b"\r\n", b"")


@pytest.mark.parametrize(("reply", "expected"), [
    ("550 5.1.1 <bob@example.com>: Recipient address rejected", "5.1.1"),
    ("452 4.2.2 Mailbox full", "4.2.2"),
    ("554 5.7.1 Message refused; see 2.0.0", "5.7.1"),
    ("550 mailbox unavailable", "5.0.0"),
    ("550 version 15.1.2 of the server", "5.0.0"),
])
def test_status_of(reply: str, expected: str) -> None:
    assert status_of(reply) == expected


def test_status_of_default() -> None:
    assert status_of("connection timed out", default="4.4.1") == "4.4.1"
