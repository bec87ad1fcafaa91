"""Tests for pvoq.smtp.headers and the header block `smtp.server.message_info` reads."""

from __future__ import annotations

import pytest

from pvoq.maillog.writer import format_line
from pvoq.smtp.headers import log_safe
from pvoq.smtp.server import message_info


def head(*lines: bytes) -> bytes:
    return b"\r\n".join([b"From: a@example.org", *lines]) + b"\r\n\r\nbody\r\n"


class TestSubject:
    def test_raw_utf8_subject_is_decoded(self) -> None:
        info = message_info(head("Subject: Grüße aus Köln".encode()))
        assert info.subject == "Grüße aus Köln"

    def test_raw_utf8_message_id(self) -> None:
        info = message_info(head("Message-ID: <grüße@example.org>".encode()))
        assert info.message_id == "<grüße@example.org>"

    def test_not_utf8_falls_back_as_before(self) -> None:
        info = message_info(head(b"Subject: Gr\xfc\xdfe"))   # Latin-1: not valid UTF-8
        assert info.subject == "Gr\ufffd\ufffde"

    def test_ascii_and_encoded_words_unchanged(self) -> None:
        assert message_info(head(b"Subject: plain")).subject == "plain"
        assert message_info(head(b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=")).subject == (
            "=?utf-8?q?Gr=C3=BC=C3=9Fe?=")

    def test_folded_utf8_subject(self) -> None:
        info = message_info(head("Subject: first\r\n zweite Grüße".encode()))
        assert info.subject == "first\r\n zweite Grüße"

    def test_first_of_two_and_absent(self) -> None:
        assert message_info(head("Subject: ä".encode(), b"Subject: b")).subject == "ä"
        assert message_info(head()).subject == ""


class TestLogSafe:
    @pytest.mark.parametrize(("text", "shown"), [
        ("Grüße", "Grüße"),
        ("a\x1b[31mred", "a\\x1b[31mred"),
        ("a\x00b\x7fc\x85d", "a\\x00b\\x7fc\\x85d"),
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        ("tab\tkept", "tab\tkept"),
    ])
    def test_escapes(self, text: str, shown: str) -> None:
        assert log_safe(text) == shown

    def test_a_forged_line_stays_on_one_line(self) -> None:
        subject = message_info(head(
            "Subject: x\u2028Critical: forged\x85Critical: forged".encode())).subject
        line = format_line(f'MID 1 Subject "{log_safe(subject)}"', epoch=0)
        assert len(line.splitlines()) == 1
