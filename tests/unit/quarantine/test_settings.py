"""Tests for pvoq.quarantine.settings and pvoq.quarantine.mime: pure decisions, no I/O."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvoq.quarantine.mime import apply_early_release, attachments_of
from pvoq.quarantine.settings import (
    DAY,
    DELETE,
    RELEASE,
    EarlyRelease,
    OverflowCandidate,
    QuarantineSettings,
    SettingsError,
    builtin_defaults,
    choose_overflow,
    crossed_threshold,
    delay_seconds,
    merge_settings,
    percent_full,
    quarantine_for,
    retention_seconds,
    scheduled_exit,
)


class TestMergeSettings:
    def test_builtins_always_exist(self) -> None:
        """With nothing configured the four built-in quarantines exist."""
        assert set(merge_settings([])) == {"Policy", "Virus", "Outbreak", "Unclassified"}
        assert all(q.builtin for q in merge_settings([]).values())

    def test_custom_added_and_builtin_overridden(self) -> None:
        """A custom quarantine is added and a built-in's settings can be changed."""
        merged = merge_settings([QuarantineSettings("HR", 2 * DAY, RELEASE, False),
                                 QuarantineSettings("Policy", DAY, RELEASE, True)])
        assert merged["HR"].retention_s == 2 * DAY and not merged["HR"].builtin
        assert merged["Policy"].default_action == RELEASE and merged["Policy"].builtin

    def test_one_quarantine_must_free_space(self) -> None:
        """At least one quarantine must allow freeing up space on overflow."""
        with pytest.raises(SettingsError, match="at least one"):
            merge_settings([QuarantineSettings(n, DAY, DELETE, False)
                            for n in builtin_defaults()])

    def test_early_release_needs_release_default(self) -> None:
        """Early-release options are refused on a delete-by-default quarantine."""
        with pytest.raises(SettingsError, match="early-release"):
            merge_settings([QuarantineSettings("HR", DAY, DELETE, True,
                                               EarlyRelease(subject_tag="[X]"))])

    def test_bad_default_action(self) -> None:
        """A default action other than release or delete is refused."""
        with pytest.raises(SettingsError, match="default action"):
            merge_settings([QuarantineSettings("HR", DAY, "bounce", True)])


class TestRetention:
    def test_units(self) -> None:
        """Retention is given in minutes, hours or days."""
        assert retention_seconds(30, "minutes") == 1800
        assert retention_seconds(2, "hours") == 7200
        assert retention_seconds(3, "days") == 3 * DAY
        with pytest.raises(SettingsError):
            retention_seconds(1, "weeks")

    def test_scheduled_exit(self) -> None:
        """The scheduled exit is the arrival time plus the retention."""
        assert scheduled_exit(1000.0, QuarantineSettings("X", 60.0)) == 1060.0

    def test_delays(self) -> None:
        """Delay Scheduled Exit offers 8 h, 24 h, 48 h and 1 week, nothing else."""
        assert [delay_seconds(d) for d in ("8h", "24h", "48h", "1w")] == [
            8 * 3600, DAY, 2 * DAY, 7 * DAY]
        with pytest.raises(SettingsError):
            delay_seconds("2h")

    def test_unknown_quarantine_is_unclassified(self) -> None:
        """Mail for a quarantine that does not exist lands in Unclassified."""
        assert quarantine_for("Gone", ["Policy", "Unclassified"]) == "Unclassified"
        assert quarantine_for("Policy", ["Policy", "Unclassified"]) == "Policy"


class TestOverflowChoice:
    def test_oldest_first_until_enough(self) -> None:
        """The oldest messages are chosen until enough bytes are freed."""
        cands = [OverflowCandidate(3, 30.0, 100), OverflowCandidate(1, 10.0, 100),
                 OverflowCandidate(2, 20.0, 100)]
        assert choose_overflow(cands, 150) == [1, 2]

    def test_impossible(self) -> None:
        """When the candidates cannot free enough, nothing is chosen (None)."""
        assert choose_overflow([OverflowCandidate(1, 1.0, 10)], 100) is None
        assert choose_overflow([], 1) is None

    def test_nothing_needed(self) -> None:
        """When there is room, nothing is chosen."""
        assert choose_overflow([OverflowCandidate(1, 1.0, 10)], 0) == []

    def test_percent_and_thresholds(self) -> None:
        """Fill level in percent and the thresholds crossed for the log line."""
        assert percent_full(50, 200) == 25 and percent_full(1, 0) == 0
        assert crossed_threshold(40, 80) == 75
        assert crossed_threshold(80, 85) is None


def _message_with_attachment() -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.com"
    msg["Subject"] = "Invoice"
    msg.set_content("see attached\n")
    msg.add_attachment(b"x" * 1234, maintype="application", subtype="pdf",
                       filename="invoice.pdf")
    return msg.as_bytes()


class TestMime:
    def test_attachments_listed(self) -> None:
        """Attachment names and decoded sizes are read from the body."""
        assert attachments_of(_message_with_attachment()) == [("invoice.pdf", 1234)]

    def test_broken_message_has_no_attachments(self) -> None:
        """A body that is not MIME yields no attachments, not an error."""
        assert attachments_of(b"\x00\xff garbage") == []

    def test_early_release_options(self) -> None:
        """Subject tag, X-header and stripped attachments are applied to the released copy."""
        body = apply_early_release(_message_with_attachment(), EarlyRelease(
            subject_tag="[EARLY]", x_header="X-Release-Early: True",
            strip_attachments=True))
        msg = email.message_from_bytes(body, policy=email.policy.default)
        assert msg["Subject"] == "[EARLY] Invoice"
        assert msg["X-Release-Early"] == "True"
        assert attachments_of(body) == []
        assert b"invoice.pdf was removed" in body

    def test_append_subject(self) -> None:
        """The subject tag can be appended instead of prepended."""
        body = apply_early_release(_message_with_attachment(), EarlyRelease(
            subject_tag="(released)", subject_position="append"))
        assert email.message_from_bytes(body)["Subject"] == "Invoice (released)"

    def test_no_options_no_change(self) -> None:
        """Without options the body is released byte for byte."""
        raw = _message_with_attachment()
        assert apply_early_release(raw, EarlyRelease()) is raw


# A multipart part without a boundary, marked as an attachment: the email package reads it
# as a leaf and then refuses to set its content.
_UNSTRIPPABLE = (b"From: a@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
                 b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
                 b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
                 b"--b\r\nContent-Type: multipart/alternative\r\n"
                 b"Content-Disposition: attachment; filename=\"x.zip\"\r\n\r\nPK\x03\x04\r\n"
                 b"--b--\r\n")


class TestHostileEarlyRelease:
    def test_tag_and_header_keep_the_rest_byte_for_byte(self) -> None:
        """Subject tag and X-header touch the header section only."""
        raw = _message_with_attachment()
        body = apply_early_release(raw, EarlyRelease(subject_tag="[EARLY]",
                                                     x_header="X-Early: yes"))
        assert body.split(b"\n\n", 1)[1] == raw.split(b"\n\n", 1)[1]
        msg = email.message_from_bytes(body, policy=email.policy.default)
        assert (msg["Subject"], msg["X-Early"]) == ("[EARLY] Invoice", "yes")

    def test_unstrippable_message_loses_its_content_not_its_release(self) -> None:
        """A tree the email package cannot rewrite is released as headers and a notice."""
        body = apply_early_release(_UNSTRIPPABLE, EarlyRelease(
            subject_tag="[EARLY]", strip_attachments=True))
        msg = email.message_from_bytes(body, policy=email.policy.default)
        assert msg["Subject"] == "[EARLY] Grüße"
        assert msg.get_content_type() == "text/plain"
        assert b"PK\x03\x04" not in body and b"content was removed" in body

    def test_non_ascii_tag_and_folded_subject(self) -> None:
        """A non-ASCII tag is an encoded word; a folded subject keeps its lines."""
        raw = b"Subject: first\r\n second\r\nFrom: a@example.com\r\n\r\nbody\r\n"
        body = apply_early_release(raw, EarlyRelease(subject_tag="[frühe]",
                                                     subject_position="append"))
        msg = email.message_from_bytes(body, policy=email.policy.default)
        assert msg["Subject"] == "first second [frühe]"
        assert body.endswith(b"\r\n\r\nbody\r\n")

    def test_no_subject_gets_one(self) -> None:
        body = apply_early_release(b"From: a@example.com\r\n\r\nx\r\n",
                                   EarlyRelease(subject_tag="[EARLY]"))
        assert email.message_from_bytes(body)["Subject"] == "[EARLY]"

    @settings(max_examples=200)
    @given(st.binary(max_size=2000), st.booleans(), st.booleans())
    def test_any_body_is_released(self, raw: bytes, strip: bool, append: bool) -> None:
        """Whatever the body, the early-release options give a body, never an exception."""
        body = apply_early_release(raw, EarlyRelease(
            subject_tag="[EARLY]", subject_position="append" if append else "prepend",
            x_header="X-Early: yes", strip_attachments=strip))
        assert b"[EARLY]" in body and b"X-Early: yes" in body
