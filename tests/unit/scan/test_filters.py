"""Tests for pvoq.scan.filters: each condition and action, evaluated on real messages."""

from __future__ import annotations

from email import message_from_bytes

import pytest
from scanhelpers import message, with_attachment

from pvoq.config.filterlang import parse_filters
from pvoq.scan.filters import FilterSet
from pvoq.scan.message import Envelope, ScanMessage
from pvoq.scan.verdict import BOUNCE, DROP, PASS, CheckResult

ENVELOPE = Envelope("alice@sender.example", ("bob@example.com", "carol@corp.example"),
                    "10.1.2.3", "RELAYLIST")


def check(text: str, body: bytes, envelope: Envelope = ENVELOPE) -> CheckResult:
    filters = FilterSet("message_filters", "message filter", parse_filters(text),
                        skip_on_skip_filters=("content_filters",))
    return filters.check(ScanMessage(body, envelope))


def hits(condition: str, body: bytes, envelope: Envelope = ENVELOPE) -> bool:
    """Whether *condition* holds: the filter quarantines when it does."""
    result = check(f'f: if {condition} {{ quarantine("Policy"); }}', body, envelope)
    return bool(result.verdicts)


EXE = with_attachment(b"MZ\x90\x00 program", filename="setup.exe", subtype="x-msdownload",
                      text="Install the tool; password is 1234.")


class TestConditions:
    @pytest.mark.parametrize(("condition", "expected"), [
        ('subject == "(?i)invoice"', True),
        ('subject == "^Report$"', False),
        ('subject != "^Report$"', True),
        ('header("X-Mailer")', True),
        ('header("X-Absent")', False),
        ('header("X-Mailer") == "Mass"', True),
        ('header("X-Mailer") != "Mass"', False),
        ('header("X-Absent") != "x"', True),
        ('body-contains("noon")', True),
        ('body-contains("MZ")', False),
        ('true', True),
        ('false', False),
        ('not true', False),
        ('true and false', False),
        ('false or true', True),
    ])
    def test_header_body_and_logic(self, condition: str, expected: bool) -> None:
        """Subject, any header, body text and the logical operators decide as written."""
        body = message(subject="Your invoice", body="See you at noon.",
                       headers={"X-Mailer": "MassMailer 2"})
        assert hits(condition, body) is expected

    @pytest.mark.parametrize(("condition", "expected"), [
        ('attachment-filename == "\\.exe$"', True),
        ('attachment-filename == "\\.pdf$"', False),
        ('attachment-type == "^application/x-msdownload$"', True),
        ('attachment-size > 5', True),
        ('attachment-size > 1k', False),
        ('attachment-contains("program")', True),
        ('attachment-contains("password")', False),
        ('body-contains("password")', True),
        ('body-size > 100', True),
        ('body-size < 100', False),
    ])
    def test_attachments_and_sizes(self, condition: str, expected: bool) -> None:
        """Attachment name, type, size and content, and the message size, are matched."""
        assert hits(condition, EXE) is expected

    @pytest.mark.parametrize(("condition", "expected"), [
        ('mail-from == "@sender\\.example$"', True),
        ('mail-from == "@other"', False),
        ('rcpt-to == "^carol@"', True),
        ('rcpt-to != "^carol@"', False),
        ('remote-ip == "10.0.0.0/8"', True),
        ('remote-ip == "192.0.2.0/24, 10.1.2.3"', True),
        ('remote-ip == "192.0.2.0/24"', False),
        ('remote-ip != "192.0.2.0/24"', True),
        ('sendergroup == "^RELAYLIST$"', True),
        ('sendergroup == "BLOCKED"', False),
    ])
    def test_envelope(self, condition: str, expected: bool) -> None:
        """Envelope sender, recipients, remote IP and sender group are matched."""
        assert hits(condition, message()) is expected

    def test_encoded_subject_is_matched_decoded(self) -> None:
        """An RFC 2047 encoded Subject is matched on its decoded text."""
        body = message(subject="=?utf-8?q?Confidential_=E2=80=93_Q3?=")
        assert hits('subject == "Confidential – Q3"', body)

    def test_unknown_remote_ip(self) -> None:
        """Without a remote IP, `remote-ip ==` is false and `!=` is true."""
        env = Envelope("a@b", ("c@d",), "", "")
        assert not hits('remote-ip == "0.0.0.0/0"', message(), env)
        assert hits('remote-ip != "0.0.0.0/0"', message(), env)


class TestActions:
    def test_quarantine_is_final_and_names_the_filter(self) -> None:
        """quarantine() gives a verdict with the filter's name and ends the filter set."""
        result = check('a: if true { quarantine("Policy"); }\n'
                       'b: if true { quarantine("Virus"); }', message())
        (v,) = result.verdicts
        assert (v.stage, v.quarantine, v.reason) == ("message_filters", "Policy",
                                                     "message filter:a")
        assert 'quarantine("Policy")' in v.detail
        assert result.hits == ["message filter:a"]

    def test_hits_and_misses_are_recorded(self) -> None:
        """Every filter evaluated is recorded as a hit or a miss, in order."""
        result = check('a: if false { drop(); }\nb: if true { insert-header("X-A", "1"); }\n'
                       'c: if false { drop(); }', message())
        assert result.misses == ["message filter:a", "message filter:c"]
        assert result.hits == ["message filter:b"]

    def test_else_branch(self) -> None:
        """The else actions run when the condition is false."""
        result = check('a: if false { drop(); } else { quarantine("Policy"); }', message())
        assert [v.quarantine for v in result.verdicts] == ["Policy"]

    def test_duplicate_quarantine_is_not_final(self) -> None:
        """duplicate-quarantine() marks a copy and lets later filters run."""
        result = check('a: if true { duplicate-quarantine("Policy"); }\n'
                       'b: if true { quarantine("Virus"); }', message())
        assert [(v.quarantine, v.duplicate) for v in result.verdicts] == [
            ("Policy", True), ("Virus", False)]

    @pytest.mark.parametrize(("action", "outcome"), [("drop", DROP), ("bounce", BOUNCE)])
    def test_drop_and_bounce_end_everything(self, action: str, outcome: str) -> None:
        """drop() and bounce() are final and name the filter as the reason."""
        result = check(f'a: if true {{ {action}(); }}\nb: if true {{ quarantine("Policy"); }}',
                       message())
        assert (result.action, result.reason, result.verdicts) == (
            outcome, "message filter:a", [])
        assert result.outcome == outcome

    def test_deliver_stops_the_filter_set(self) -> None:
        """deliver() ends the filter set; the message passes the stage."""
        result = check('a: if true { deliver(); }\nb: if true { quarantine("Policy"); }',
                       message())
        assert (result.action, result.verdicts, result.skip) == (PASS, [], ())

    def test_skip_filters_skips_content_filters(self) -> None:
        """skip-filters() ends the filter set and asks the pipeline to skip content filters."""
        result = check('a: if true { skip-filters(); }\nb: if true { drop(); }', message())
        assert (result.action, result.skip) == (PASS, ("content_filters",))

    def test_insert_header(self) -> None:
        """insert-header() adds the header; later filters see it; the body is kept."""
        body = message()
        result = check('a: if true { insert-header("X-Scanned", "by pvoq"); }\n'
                       'b: if header("X-Scanned") == "pvoq" { quarantine("Policy"); }', body)
        assert result.body is not None and result.body.endswith(body)
        assert message_from_bytes(result.body)["X-Scanned"] == "by pvoq"
        assert [v.reason for v in result.verdicts] == ["message filter:b"]

    def test_strip_header_with_continuation_lines(self) -> None:
        """strip-header() removes every instance of the header, folded lines included."""
        body = (b"From: a@b\r\nX-Old: one\r\n  folded\r\nSubject: s\r\nx-old: two\r\n"
                b"\r\nbody X-Old: stays\r\n")
        result = check('a: if true { strip-header("X-Old"); }', body)
        assert result.body == b"From: a@b\r\nSubject: s\r\n\r\nbody X-Old: stays\r\n"

    def test_strip_attachment_by_name(self) -> None:
        """strip-attachment-by-name() replaces matching attachments and keeps the text."""
        result = check('a: if true { strip-attachment-by-name("\\.exe$"); }', EXE)
        assert result.body is not None
        stripped = ScanMessage(result.body)
        assert [a.filename for a in stripped.attachments] == ["removed.txt"]
        assert b"MZ" not in result.body
        assert any("password is 1234" in t for t in stripped.body_texts)

    def test_unmodified_message_has_no_body(self) -> None:
        """A strip that matches nothing leaves the message untouched."""
        result = check('a: if true { strip-attachment-by-name("\\.pdf$"); '
                       'strip-header("X-None"); }', EXE)
        assert result.body is None
