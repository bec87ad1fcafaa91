"""Fuzzing the MIME scanning entry point: whatever bytes a client sends as a message.

The properties: `check_structure` raises nothing but `Unscannable`; every
view of a `ScanMessage` (subject, headers, attachments, body texts, URLs)
raises nothing but `Unscannable`; and a pipeline whose checks cannot fail
on their own (the built-in EICAR engine, filters that read every view)
gives every message a result, never a `ScanError` (which would make a
hostile message a temporary failure, retried). Arbitrary bytes, real
messages mutated, deep nests, header floods, bad encodings and charsets,
8-bit headers; each within the profile's deadline (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from hypothesis import example, given, settings
from hypothesis import strategies as st
from scanhelpers import message, with_attachment
from test_mime_limits import EICAR_PART, multipart_nest, rfc822_nest

from pvoq.config.filterlang import parse_filters
from pvoq.config.model import ScanSettings
from pvoq.scan.antivirus import EicarEngine
from pvoq.scan.message import MimeLimits, ScanMessage, Unscannable, check_structure
from pvoq.scan.pipeline import Pipeline, ScanResult

LIMITS = MimeLimits()
# A filter that reads every view of the message (none of them matches).
EVERY_VIEW = parse_filters(
    'every_view: if subject == "^never$" or header("X-Never") == "x" '
    'or body-contains("never-in-here") or attachment-filename == "^never$" '
    'or attachment-type == "^never/never$" or attachment-size > 100M '
    'or attachment-contains("never-in-here") { quarantine("Policy"); }')
# Filters that rewrite the message (the stages after them scan the new body).
REWRITE = parse_filters(
    'rewrite: if true { insert-header("X-Scanned", "yes"); strip-header("X-Mailer"); '
    'strip-attachment-by-name("(?i)\\.(exe|bin)$"); }')

CORPUS = [
    message(),
    message(subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=", headers={"X-Mailer": "m"}),
    "Subject: Grüße\r\nFrom: a@example.org\r\n\r\nhallo http://x.example/p\r\n".encode(),
    with_attachment(b"MZ\x90\x00 program", filename="setup.exe"),
    multipart_nest(4, EICAR_PART),
    rfc822_nest(4),
    (b'Content-Type: multipart/alternative; boundary="a"\r\n\r\n--a\r\n'
     b"Content-Type: text/plain; charset=iso-8859-1\r\n"
     b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 =\r\nhttps://u.example/\r\n"
     b"--a\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
     b"PGI+aGk8L2I+\r\n--a--\r\n"),
]

CHARSETS = ["utf-8", "idna", "undefined", "punycode", "utf-7", "rot13", "hex", "bogus",
            "ascii\x00", "utf-16", "unicode_escape", "", "x-\xff"]
ENCODINGS = ["base64", "quoted-printable", "x-uuencode", "uuencode", "8bit", "7bit", "bogus",
             "binary"]
HEADER_NAMES = ["Subject", "Content-Type", "Content-Disposition", "Content-Transfer-Encoding",
                "From", "X-Mailer", "MIME-Version", "Message-ID"]


@st.composite
def hostile_part(draw: st.DrawFn) -> bytes:
    """A leaf part with a hostile charset, encoding, file name and payload."""
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from(ENCODINGS))
    kind = draw(st.sampled_from(["text/plain", "text/html", "application/octet-stream",
                                 "message/rfc822", "multipart/mixed", "", "text/"]))
    name = draw(st.sampled_from([
        'filename="a.exe"', f"filename*={charset}''%ff%fe.exe", "filename*=''",
        "filename*0*=utf-8''a; filename*1=b", 'name="=?utf-8?b?////?="',
        f'name="=?{charset}?q?=FF?="', ""]))
    payload = draw(st.binary(max_size=200))
    return (f"Content-Type: {kind}; charset={charset}; {name}\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n"
            f"Content-Disposition: attachment; {name}\r\n\r\n").encode("utf-8", "replace") \
        + payload + b"\r\n"


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """Nests of hostile parts, boundaries reused or left open, header floods."""
    body = draw(hostile_part())
    for _ in range(draw(st.integers(0, 8))):
        layer = draw(st.sampled_from(["multipart", "rfc822", "open", "reused"]))
        if layer == "rfc822":
            body = b"Content-Type: message/rfc822\r\n\r\n" + body
        else:
            b = draw(st.sampled_from(["b", "b", "--", "", "x" * 80, "\xff"]))
            close = b"" if layer == "open" else f"\r\n--{b}--\r\n".encode("utf-8", "replace")
            head = f'Content-Type: multipart/mixed; boundary="{b}"\r\n\r\n--{b}\r\n'
            body = head.encode("utf-8", "replace") + body + close
    flood = draw(st.integers(0, 1200))
    headers = b"".join(f"{draw(st.sampled_from(HEADER_NAMES))}: v\r\n".encode()
                       for _ in range(min(flood, 20)))
    headers += b"X-Flood: x\r\n" * max(0, flood - 20)
    eight_bit = draw(st.sampled_from([b"", "Subject: Grüße\r\n".encode(),
                                      b"Subject: \xff\xfe\x80\r\n", b"Subject: =?x?q?\xff?=\r\n"]))
    return eight_bit + headers + body


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real message with bytes inserted, removed, duplicated or replaced."""
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        end = draw(st.integers(at, min(len(data), at + 200)))
        change = draw(st.sampled_from(["insert", "remove", "duplicate", "replace"]))
        if change == "insert":
            data[at:at] = draw(st.one_of(st.binary(max_size=40), st.sampled_from(
                [b"\r\n", b"\r\n\r\n", b"--a\r\n", b"--a--\r\n", b"\x00", b"=?", b"\n.\n",
                 b"Content-Type: message/rfc822\r\n\r\n"])))
        elif change == "remove":
            del data[at:end]
        elif change == "duplicate":
            data[at:at] = data[at:end] * draw(st.integers(1, 20))
        elif data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
    return bytes(data)


messages = st.one_of(st.binary(max_size=3000), mutated(), structured())


def every_view(msg: ScanMessage) -> None:
    """Each view a check may use; `Unscannable` is the one error allowed."""
    try:
        msg.subject, msg.headers("From"), msg.headers("Content-Type")
        for a in msg.attachments:
            a.sha256, a.extension, a.size  # noqa: B018
        msg.body_texts, msg.urls  # noqa: B018
    except Unscannable:
        pass


_PIPELINE: list[Pipeline] = []


def pipeline() -> Pipeline:
    """One pipeline for the module: the built-in EICAR engine and a filter on every view."""
    if not _PIPELINE:
        settings = replace(ScanSettings(), message_filters=EVERY_VIEW,
                           content_filter_rules=REWRITE + EVERY_VIEW, outbreak_urls=("evil.example",))
        _PIPELINE.append(Pipeline(settings, engine=EicarEngine()))
    return _PIPELINE[0]


def teardown_module() -> None:
    for p in _PIPELINE:
        p.close()


@settings(max_examples=400)
@given(messages)
@example(b"Content-Type: text/plain; charset=idna\r\n\r\n\xff\r\n")
@example(b"Content-Type: text/plain; charset=undefined\r\n\r\nx\r\n")
@example(b"Content-Type: application/octet-stream; name*=idna''%ff\r\n\r\nx\r\n")
@example(b"Content-Disposition: attachment; filename*=idna''%ff\r\n\r\nx\r\n")
@example(b"ContenT-type:name==?\x80?q??=")
def test_every_view_of_any_message_is_a_value_or_unscannable(body: bytes) -> None:
    with contextlib.suppress(Unscannable):
        check_structure(body, LIMITS)
    every_view(ScanMessage(body))


@settings(max_examples=200)
@given(messages)
@example(b"Content-Type: text/plain; charset=idna\r\n\r\n\xff\r\n")
@example(b"Content-Disposition: attachment; filename*=idna''%ff\r\n\r\nx\r\n")
@example(b"ContenT-type:name==?\x80?q??=")
def test_the_pipeline_gives_any_message_a_result(body: bytes) -> None:
    """No stage fails on a message: its result, or the unscannable action."""
    result = pipeline().run(body)
    assert isinstance(result, ScanResult)


@settings(max_examples=20)
@given(st.integers(1, 3000), st.sampled_from(["multipart", "rfc822"]))
def test_any_depth_is_decided(depth: int, kind: str) -> None:
    body = multipart_nest(depth) if kind == "multipart" else rfc822_nest(depth)
    result = pipeline().run(body)
    assert (result.unscannable != "") is (depth > LIMITS.max_depth)
