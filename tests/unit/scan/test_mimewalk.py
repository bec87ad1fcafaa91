"""Walking a large message part by part: the same views as the email package's parse."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvoq.scan import message as message_module
from pvoq.scan.antivirus import EICAR, EicarEngine
from pvoq.scan.message import ScanMessage
from pvoq.scan.mimewalk import NotWalkable, leaves


def views(body: bytes) -> tuple[object, ...]:
    msg = ScanMessage(body)
    return ([(a.filename, a.content_type, a.size, a.sha256, a.payload)
             for a in msg.attachments], msg.body_texts, msg.urls, msg.subject,
            msg.headers("X-Tag"))


def parsed_and_walked(body: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    monkeypatch.setattr(message_module, "WALK_ABOVE", 1 << 40)
    parsed = views(body)
    monkeypatch.setattr(message_module, "WALK_ABOVE", 0)
    walked = views(body)
    monkeypatch.undo()
    return parsed, walked


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


MIXED = crlf("""\
From: a@example.org
Subject: =?utf-8?q?caf=C3=A9?= report
X-Tag: one
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

preamble http://preamble.example/x
--outer
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Read http://text.example/a?b=3D1 caf=C3=A9=
 soon
--outer \t
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/html

<a href="http://html.example/p">x</a>
--inner
Content-Type: application/pdf; name="r.pdf"
Content-Transfer-Encoding: base64

""") + base64.encodebytes(b"%PDF http://pdf.example/q " * 50).replace(b"\n", b"\r\n") + crlf("""\
--inner--
inner epilogue
--outer
Content-Type: message/rfc822
Content-Disposition: inline

Subject: forwarded
Content-Type: multipart/mixed; boundary=fwd

--fwd
Content-Type: text/plain

forwarded text http://fwd.example/
--fwd
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="data.bin"
Content-Transfer-Encoding: base64

AAECAwQFBgcICQ==
--fwd--

--outer
Content-Disposition: attachment; filename*=utf-8''na%C3%AFve.txt

plain attachment, no blank line ending
--outer--
epilogue
""")


def test_a_nested_message_gives_the_same_views_walked_as_parsed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Multipart in multipart, a forwarded message/rfc822, quoted-printable, base64,
    RFC 2231 and RFC 2047 names, preamble and epilogue: walked part by part, the checks
    see exactly what the whole parse shows them."""
    list(leaves(MIXED))  # walked, not parsed again
    parsed, walked = parsed_and_walked(MIXED, monkeypatch)
    assert walked == parsed
    attachments = parsed[0]
    assert [a[0] for a in attachments] == ["r.pdf", "data.bin", "naïve.txt"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("body", [
    crlf("Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: "
         "text/plain\n\nno close delimiter\n"),
    b"Subject: x\nContent-Type: text/plain\n\nLF only http://lf.example/\n",
    crlf("Subject: x\nContent-Type: multipart/mixed\n\nno boundary http://nb.example/\n"),
    crlf("Subject: x\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; a\n"),
    crlf("Subject: x\nContent-Type: multipart/mixed; boundary=b\n\nno delimiter at all\n"),
])
def test_what_the_walk_does_not_follow_is_parsed_whole(
        body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotWalkable):
        list(leaves(body))
    parsed, walked = parsed_and_walked(body, monkeypatch)
    assert walked == parsed


part_texts = st.lists(st.sampled_from(list("ab .=-\t") + ["\n", "\n--b", "\n--b--", "=4",
                                                          "http://u.example/z"]),
                      max_size=30).map("".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["7bit", "quoted-printable", "base64"]),
                          st.booleans(), part_texts), min_size=1, max_size=4),
       st.text(alphabet=" \t", max_size=2), st.booleans())
def test_any_multipart_walks_as_it_parses(parts: list[tuple[str, bool, str]], pad: str,
                                          headers_end_early: bool) -> None:
    """Parts of any encoding, with text that looks like delimiters, whitespace after the
    delimiters, a header section ended by a non-header line: the same views."""
    pieces = ["Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"]
    for cte, attached, text in parts:
        content = text.replace("\n", "\r\n").encode()
        if cte == "base64":
            content = base64.encodebytes(content).replace(b"\n", b"\r\n")
        head = f"--b{pad}\r\nContent-Transfer-Encoding: {cte}\r\n"
        if attached:
            head += 'Content-Disposition: attachment; filename="f.txt"\r\n'
        pieces.append(head + ("" if headers_end_early else "\r\n"))
        pieces.append(content.decode("latin-1") + "\r\n")
    pieces.append("--b--\r\n")
    body = "".join(pieces).encode("latin-1")
    with pytest.MonkeyPatch.context() as mp:
        try:
            list(leaves(body))
        except NotWalkable:
            return  # a text that closed the multipart early: parsed whole, as it should
        assert parsed_and_walked(body, mp)[1] == parsed_and_walked(body, mp)[0]


def test_the_builtin_engine_finds_eicar_in_a_walked_attachment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    body = crlf("Subject: x\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
                "Content-Transfer-Encoding: base64\n\n") + base64.b64encode(EICAR) + \
        crlf("\n--b--\n")
    monkeypatch.setattr(message_module, "WALK_ABOVE", 0)
    from pvoq.scan import antivirus
    monkeypatch.setattr(antivirus, "WALK_ABOVE", 0)
    assert EicarEngine().scan(body).verdict == "VIRAL"
    assert EicarEngine().scan(body.replace(b"WDVP", b"WDVQ")).verdict == "CLEAN"


url_texts = st.lists(st.sampled_from([b"http", b"HTTPS", b"hTTp", b"s", b"://", b"x.example",
                                      b"/p", b"@", b" ", b"\r\n", b"'", b":80", b".", b"a"]),
                     max_size=40).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(url_texts)
def test_url_matches_finds_what_the_regex_finds(payload: bytes) -> None:
    """The byte search for `://` finds the same URLs, in the same order, as the regex
    run over every position (overlaps, upper case, a URL inside another's path)."""
    expected = [m.span() for m in message_module._URL.finditer(payload)]
    assert [m.span() for m in message_module.url_matches(payload)] == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"bb", b"\r", b"\n", b"\r\n", b"\n\r", b""]),
                max_size=40).map(b"".join), st.integers(min_value=1, max_value=8))
def test_lines_in_chunks_are_splitlines(body: bytes, chunk: int) -> None:
    """The structure check reads a message's lines a chunk at a time: the same lines as
    `splitlines`, whatever the line ends and wherever a chunk would cut."""
    assert list(message_module._lines(body, chunk)) == body.splitlines()


@pytest.mark.parametrize("body", [
    b"ContenT-type:multipart/;boundary=\xc3\r\n",
    b"Content-Type: multipart/mixed; boundary=\"\xc3\xa9\"\r\n\r\n--\xc3\xa9\r\n\r\nx\r\n"
    b"--\xc3\xa9--\r\n",
])
def test_a_boundary_that_is_not_ascii_is_parsed_whole(body: bytes,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NotWalkable, match="not ASCII"):
        list(leaves(body))
    parsed, walked = parsed_and_walked(body, monkeypatch)
    assert walked == parsed
