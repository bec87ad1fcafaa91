"""Tests for pvoq.smtp.received: the `Received:` trace header's text, from hostile input too."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pvoq.smtp.received import (
    FOLD_AT,
    MAX_HEADER,
    MAX_NAME,
    TlsInfo,
    address_literal,
    clean_name,
    received_header,
)

WHEN = datetime(2026, 11, 30, 12, 5, 9, tzinfo=timezone(timedelta(hours=1)))
DATE = "Mon, 30 Nov 2026 12:05:09 +0100"
TLS13 = TlsInfo("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256)


def header(**changes: Any) -> bytes:
    args: dict[str, Any] = dict(helo="client.example", reverse_name=None,
                                client_ip="192.0.2.7", by="gw1.example.com", esmtp=True,
                                tls=None, mid=42, recipients=["bob@example.com"], when=WHEN)
    args.update(changes)
    return received_header(**args)


def unfolded(raw: bytes) -> str:
    """The field's value as a reader sees it: one line, folds removed."""
    text = raw.decode("ascii")
    assert text.startswith("Received: ") and text.endswith("\r\n")
    return text[len("Received: "):-2].replace("\r\n\t", " ")


def fields(raw: bytes) -> list[tuple[str, str]]:
    """The header fields a mail parser finds in *raw* followed by a body."""
    parsed = BytesHeaderParser(policy=compat32).parsebytes(raw + b"Subject: s\r\n\r\nbody\r\n")
    return [(k, v) for k, v in parsed.raw_items()]


class TestText:
    def test_plain_esmtp_with_one_recipient(self) -> None:
        assert header() == (
            b"Received: from client.example (unknown [192.0.2.7]) by gw1.example.com\r\n"
            b"\twith ESMTP id 42 for <bob@example.com>; " + DATE.encode() + b"\r\n")

    def test_helo_gives_smtp_and_the_reverse_name_is_shown(self) -> None:
        assert unfolded(header(esmtp=False, reverse_name="mx.sender.example")) == (
            "from client.example (mx.sender.example [192.0.2.7]) by gw1.example.com "
            f"with SMTP id 42 for <bob@example.com>; {DATE}")

    def test_tls_gives_esmtps_and_the_postfix_comment(self) -> None:
        raw = header(tls=TLS13)
        assert unfolded(raw) == (
            "from client.example (unknown [192.0.2.7]) "
            "(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256 bits)) "
            f"by gw1.example.com with ESMTPS id 42 for <bob@example.com>; {DATE}")
        assert all(len(line) <= FOLD_AT for line in raw.decode().split("\r\n"))

    def test_for_only_with_exactly_one_recipient(self) -> None:
        two = unfolded(header(recipients=["a@example.com", "b@example.com"]))
        assert "for" not in two.split() and "a@example.com" not in two
        assert two.endswith(f"with ESMTP id 42; {DATE}")
        assert "for <\"a b\"@example.com>;" in unfolded(header(recipients=['"a b"@example.com']))
        assert "for" not in unfolded(header(recipients=["grüße@example.com"])).split()
        assert "for" not in unfolded(header(recipients=['"a>b"@example.com'])).split()

    def test_ipv6_literal_and_ipv4_mapped(self) -> None:
        assert "(unknown [IPv6:::1])" in unfolded(header(client_ip="::1"))
        assert "[IPv6:2001:db8::7]" in unfolded(header(client_ip="2001:db8:0:0::7"))
        assert "(unknown [198.51.100.9])" in unfolded(header(client_ip="::ffff:198.51.100.9"))
        assert address_literal("not an address") is None
        assert "(unknown) by" in unfolded(header(client_ip=""))

    def test_date_is_rfc5322_in_local_time_by_default(self) -> None:
        value = unfolded(header(when=None))
        stamp = value.rsplit("; ", 1)[1]
        assert datetime.strptime(stamp, "%a, %d %b %Y %H:%M:%S %z")

    def test_the_default_date_is_this_seconds_local_time(self) -> None:
        """Rendered once a second (a busy listener stamps many messages in each): the
        same text as the current second's local time with its offset."""
        for _ in range(5):  # bounded: a retry only when the second turns meanwhile
            before = int(time.time())
            value = unfolded(header(when=None))
            after = int(time.time())
            if before == after:
                break
        expected = unfolded(header(when=datetime.fromtimestamp(before).astimezone()))
        assert value == expected


class TestHostileInput:
    def test_crlf_in_helo_cannot_add_a_header(self) -> None:
        raw = header(helo="evil.example\r\nBcc: victim@example.org\r\n\r\nbody")
        assert [k for k, _ in fields(raw)] == ["Received", "Subject"]
        assert raw.count(b"\r\n") == raw.count(b"\r\n\t") + 1
        assert b"from evil.exampleBcc:?victim?example.org" in raw

    def test_comment_breakers_and_controls_are_neutralised(self) -> None:
        value = unfolded(header(helo="a) (b\\c\"d\x00\x1b\x7f\u2028é", reverse_name="x(y)"))
        assert value.startswith("from a???b?c?d? (x?y? [192.0.2.7]) by ")

    def test_long_names_are_bounded_and_the_rest_folded(self) -> None:
        raw = header(helo="h" * 5000, reverse_name="r" * 5000, tls=TLS13)
        lines = raw.decode().split("\r\n")[:-1]
        assert lines[0] == "Received: from " + "h" * MAX_NAME
        assert lines[1] == "\t(unknown [192.0.2.7])".replace("unknown", "r" * MAX_NAME)
        assert all(len(line) <= FOLD_AT for line in lines[2:])
        assert all(line.startswith("\t") for line in lines[1:])

    def test_empty_helo_is_unknown(self) -> None:
        assert unfolded(header(helo="")).startswith("from unknown (unknown [192.0.2.7])")
        assert clean_name("\r\n") == "unknown"

    @settings(max_examples=100, deadline=None)
    @given(helo=st.text(max_size=600), rdns=st.one_of(st.none(), st.text(max_size=600)),
           rcpt=st.text(max_size=300), cipher=st.text(max_size=200))
    def test_any_input_gives_one_bounded_ascii_field(self, helo: str, rdns: str | None,
                                                     rcpt: str, cipher: str) -> None:
        raw = header(helo=helo, reverse_name=rdns, recipients=[rcpt],
                     tls=TlsInfo("TLSv1.2", cipher, 128))
        assert len(raw) <= MAX_HEADER
        raw.decode("ascii")
        assert b"\r" not in raw.replace(b"\r\n", b"") and b"\n" not in raw.replace(b"\r\n", b"")
        assert [k for k, _ in fields(raw)] == ["Received", "Subject"]
        assert raw.count(b"<") <= 1 and raw.count(b">") <= 1
        assert all(line.startswith(b"\t") for line in raw.split(b"\r\n")[1:-1])
