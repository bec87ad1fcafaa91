"""The attachments of a large held body, listed part by part: as the whole parse lists them."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvoq.quarantine import mime
from pvoq.quarantine.mime import attachments_of


def body_with(*parts: bytes) -> bytes:
    head = (b"Subject: held\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="zz"\r\n\r\n')
    return head + b"".join(b"--zz\r\n" + p + b"\r\n" for p in parts) + b"--zz--\r\n"


PARTS = [
    b"Content-Type: text/plain\r\n\r\nhello",
    b'Content-Type: application/pdf; name="a.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
    b'Content-Disposition: attachment; filename="a.pdf"\r\n\r\n'
    + base64.encodebytes(b"%PDF" * 3000).replace(b"\n", b"\r\n").rstrip(b"\r\n"),
    b"Content-Disposition: attachment\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=C3=A9 =\r\nsoon",
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''%C3%A9t%C3%A9.txt\r\n\r\ninner",
    b"Content-Type: application/octet-stream; name==?utf-8?q?r=C3=A9sum=C3=A9.doc?=\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nAAEC",
]


@pytest.mark.parametrize("body", [body_with(*PARTS), body_with(PARTS[0]),
                                  b"Subject: x\nContent-Type: text/plain\n\nLF only\n"])
def test_walked_and_parsed_list_the_same_attachments(
        body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = attachments_of(body)
    monkeypatch.setattr(mime, "WALK_ABOVE", 0)
    assert attachments_of(body) == parsed


def test_the_walk_lists_names_and_decoded_sizes() -> None:
    """Decoded sizes: base64 and quoted-printable decoded, a forwarded message's part
    without the line end before the delimiter; a part with only a name is none."""
    assert attachments_of(body_with(*PARTS)) == [
        ("a.pdf", 12000), ("unnamed", len("café soon".encode())), ("été.txt", 5)]


ONE_PART = [
    b"Subject: x\r\nContent-Type: text/plain\r\n\r\nhello\r\n",
    b"Subject: x\nContent-Type: text/plain\n\nLF only\n",
    b"Subject: x\r\n\r\nno content type\r\n",
    b'Subject: x\r\nContent-Type: application/pdf; name="a.pdf"\r\n'
    b'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="a.pdf"'
    b"\r\n\r\nJVBERg==\r\n",
    b"Subject: x\r\nContent-Disposition: attachment\r\n\r\nraw\r\n",
    b"Subject: x\r\nContent-Disposition: inline; filename*=utf-8''%C3%A9t%C3%A9.txt\r\n\r\nx",
    b"Subject: x\r\nContent-Type: application/octet-stream; name==?utf-8?q?r=C3=A9sum=C3=A9?=\r\n"
    b"\r\nAAEC\r\n",
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n"
    b"Content-Disposition: attachment; filename=in.txt\r\n\r\ninner",
    b"Subject: x\r\nContent-Type: text/plain\r\nno separator line\r\nbody\r\n",
    b'Subject: x\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n',
    b"\x00\xff garbage",
]


@pytest.mark.parametrize("body", ONE_PART)
def test_one_part_messages_as_the_whole_parse_lists_them(body: bytes) -> None:
    assert attachments_of(body) == mime._parsed_attachments(body)


def test_a_one_part_message_that_is_no_attachment_is_read_no_further_than_its_head(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []
    real = mime._parse
    monkeypatch.setattr(mime, "_parse", lambda body: parsed.append(body) or real(body))
    assert attachments_of(ONE_PART[0]) == [] and attachments_of(ONE_PART[1]) == []
    assert parsed == []
    assert attachments_of(ONE_PART[3]) == [("a.pdf", 4)] and parsed == [ONE_PART[3]]
    assert attachments_of(body_with(*PARTS))[0] == ("a.pdf", 12000) and len(parsed) == 2


HEADER_LINES = [
    b"Subject: x", b"From: a@example.com", b"MIME-Version: 1.0",
    b"Content-Type: text/plain", b"Content-Type: text/plain; charset=utf-8",
    b'content-type:TEXT/html; charset="iso-8859-1";', b"Content-Type: text/plain; name=a.txt",
    b"Content-Type: multipart/mixed; boundary=zz", b"Content-Type: message/rfc822",
    b"Content-Type: application/pdf", b"Content-Type : text/plain",
    b"Content-Type: text/plain;\r\n charset=utf-8", b"Content-Type: text/plain;\r\n\tname=b.txt",
    b"X-Content-Type: multipart/mixed", b"Content-Type-Options: nosniff",
    b"Content-Disposition: attachment", b"Content-Disposition: inline; filename=c.txt",
    b"Content-Type: text/plain; charset*=utf-8''x", b"  folded on the line before",
    b"no header here", b"From someone Mon Jan  1 00:00:00 2026",
]


@settings(max_examples=400, deadline=None)
@given(lines=st.lists(st.sampled_from(HEADER_LINES), max_size=6),
       eol=st.sampled_from([b"\r\n", b"\n"]))
def test_the_header_shortcut_says_no_attachment_only_where_the_parse_agrees(
        lines: list[bytes], eol: bytes) -> None:
    """The shortcut that skips the header parser answers only where the parser's own
    answer is "one part, no attachment", and the whole parse lists none."""
    body = eol.join(line.replace(b"\r\n", eol) for line in lines) + eol + eol + b"body" + eol
    if mime._plainly_no_attachment(mime._head_block(body)):
        assert mime._parsed_attachments(body) == []
        head = mime._parse(body)
        assert head.get_content_maintype() == "text" and mime._attachment_name(head) is None


@pytest.mark.parametrize("head", [
    b"Subject: x\r\n\r\n", b"Subject: x\r\nContent-Type: text/plain\r\n\r\n",
    b'MIME-Version: 1.0\r\ncontent-type: Text/HTML; charset="utf-8"\r\nSubject: y\r\n\r\n'])
def test_plain_text_messages_are_not_parsed_at_all(
        head: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the header block was parsed")
    monkeypatch.setattr(mime.BytesHeaderParser, "parsebytes", refuse)
    assert attachments_of(head + b"hello\r\n") == []


@settings(max_examples=400, deadline=None)
@given(body=st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b"a", b": ", b"\n\n", b"\n\r\n"]),
                     max_size=12).map(b"".join))
def test_the_header_block_ends_at_the_first_blank_line_crlf_or_lf(body: bytes) -> None:
    """`_head_block` cuts where the first blank line (an LF or CRLF one) begins, as a
    search for either of them through the whole body would; all of it when there is none."""
    ends = [i for i in (body.find(b"\n\n"), body.find(b"\n\r\n")) if i >= 0]
    assert mime._head_block(body) == (body[:min(ends) + 1] if ends else body)
