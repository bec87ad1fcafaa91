"""Tests for pvoq.web.preview: the sanitized HTML preview of a hostile message."""

from __future__ import annotations

import base64
from email.message import EmailMessage
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvoq.scan.message import MimeLimits
from pvoq.web.preview import (
    PLACEHOLDER,
    Preview,
    frame_csp,
    frame_document,
    preview,
    sanitize_html,
)

HOSTILE = """<html><head><style>body{background:url(http://evil.example/css.png)}</style>
<link rel=stylesheet href="http://evil.example/x.css"><base href="http://evil.example/">
<meta http-equiv="refresh" content="0;url=http://evil.example/"></head>
<body onload="alert(1)"><script>alert(2)</script>
<p style="background:url(http://evil.example/bg.png)" onclick="alert(3)">Hello</p>
<img src="http://evil.example/track.png" onerror="alert(4)">
<img src="https://cdn.example:8443/logo.png"><img src="//proto.example/x.gif">
<img src="relative.png"><img src="data:text/html;base64,PHNjcmlwdD4=">
<a href="javascript:alert(5)">js</a><a href="https://site.example/a">site</a>
<form action="http://evil.example/f"><input name=p></form>
<iframe src="http://evil.example/i"></iframe><object data="http://evil.example/o"></object>
<embed src="http://evil.example/e"><svg><image href="http://evil.example/s.png"/></svg>
<video poster="http://evil.example/p.png"></video><table background="http://evil.example/t">
<tr><td>cell</td></tr></table></body></html>"""


def mime(html: str | None = HOSTILE, text: str | None = "plain words") -> bytes:
    msg = EmailMessage()
    msg["Subject"] = "preview"
    if text is not None:
        msg.set_content(text)
    if html is not None:
        if text is None:
            msg.set_content(html, subtype="html")
        else:
            msg.add_alternative(html, subtype="html")
    return bytes(msg)


class TestSanitize:
    def test_nothing_runs_or_fetches_by_default(self) -> None:
        p = preview(mime())
        html = p.html or ""
        assert "Hello" in html and "cell" in html and (p.text or "").strip() == "plain words"
        for bad in ("<script", "alert(", "onload", "onclick", "onerror", "<style", "style=",
                    "<link", "<base", "<meta", "<form", "<input", "<iframe", "<object",
                    "<embed", "<svg", "<video", "background", "javascript:", "evil.example",
                    "cdn.example", "proto.example", "relative.png", "data:text/html"):
            assert bad not in html, bad
        assert html.count(PLACEHOLDER) == 3
        assert p.remote_images == 3 and p.remote_origins == ()
        assert '<a href="https://site.example/a"' in html

    def test_remote_images_load_only_when_asked(self) -> None:
        p = preview(mime(), load_remote=True)
        html = p.html or ""
        assert 'src="http://evil.example/track.png"' in html
        assert p.remote_origins == ("http://evil.example", "https://cdn.example:8443",
                                    "https://proto.example")
        assert "<script" not in html and "onerror" not in html and "background" not in html

    def test_the_frame_policy(self) -> None:
        """Nothing but data: images by default; the origins only when asked; sandboxed."""
        csp = frame_csp(preview(mime()))
        assert csp.startswith("default-src 'none'; img-src data:;") and "sandbox" in csp
        asked = frame_csp(preview(mime(), load_remote=True))
        assert "img-src data: http://evil.example https://cdn.example:8443 " \
               "https://proto.example;" in asked
        assert "script-src" not in asked and "default-src 'none'" in asked

    @pytest.mark.parametrize("url", ["http://a;b.example/x", "http://a b/x",
                                     "http://'none'/x", "http://x.example:99999/x",
                                     "https://[zz]/x"])
    def test_an_origin_a_policy_cannot_name_stays_a_placeholder(self, url: str) -> None:
        html, remote, origins = sanitize_html(f'<img src="{url}">', load_remote=True)
        assert origins == () and url not in html and remote <= 1

    def test_cid_images_come_from_the_message(self) -> None:
        msg = EmailMessage()
        msg.set_content("t")
        msg.add_alternative('<p><img src="cid:logo@x"></p>', subtype="html")
        png = b"\x89PNG...."
        msg.get_payload()[1].add_related(png, "image", "png", cid="<logo@x>")
        p = preview(bytes(msg))
        encoded = base64.b64encode(png).decode()
        assert f'src="data:image/png;base64,{encoded}"' in (p.html or "")
        assert p.remote_images == 0

    def test_the_document(self) -> None:
        doc = frame_document(Preview(html="<p>x</p>"))
        assert doc.startswith("<!DOCTYPE html>") and "<p>x</p>" in doc
        assert 'content="no-referrer"' in doc


class TestMessage:
    def test_attachments_listed_with_hostile_names_as_text(self) -> None:
        msg = EmailMessage()
        msg.set_content("body")
        msg.add_attachment(b"MZ" * 50, maintype="application", subtype="octet-stream",
                           filename='<img src=x onerror=alert(1)>.exe')
        msg.add_attachment(b"%PDF", maintype="application", subtype="pdf",
                           filename="=?utf-8?q?r=C3=A9sum=C3=A9.pdf?=")
        p = preview(bytes(msg))
        assert [(a.name, a.content_type, a.size) for a in p.attachments] == [
            ("<img src=x onerror=alert(1)>.exe", "application/octet-stream", 100),
            ("résumé.pdf", "application/pdf", 4)]
        assert p.html is None and (p.text or "").strip() == "body"

    def test_html_only(self) -> None:
        p = preview(mime(text=None, html="<b>bold</b><script>x</script>"))
        assert p.text is None and p.html is not None and "<b>bold</b>" in p.html

    def test_a_message_beyond_the_limits_is_a_problem_not_an_exception(self) -> None:
        body = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + (
            b"--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" * 60)
        p = preview(body, limits=MimeLimits(max_depth=5))
        assert p.problem is not None and "cannot be previewed" in p.problem
        assert p.html is None and p.attachments == []

    def test_a_long_text_is_cut(self) -> None:
        p = preview(mime(html=None, text="x" * 300_000))
        assert p.text_truncated and len(p.text or "") == 200_000


@given(st.binary(max_size=2000))
def test_any_bytes_preview_without_raising(body: bytes) -> None:
    p = preview(b"Content-Type: text/html\r\n\r\n" + body)
    assert p.problem is not None or "<script" not in (p.html or "").lower()


class Tags(HTMLParser):
    """Every tag and attribute of a document, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


PIECES = st.sampled_from(["<", ">", "/", "=", '"', "'", " ", "script", "img", "src",
                          "onerror", "style", "iframe", "http://e.example/x", "javascript:",
                          "a", "href", "<!--", "-->", "&lt;", "data:", "x"])


@given(st.lists(PIECES, max_size=40).map("".join))
def test_any_html_keeps_no_script_handler_or_remote_load(html: str) -> None:
    clean, _, origins = sanitize_html(html)
    tags = Tags()
    tags.feed(clean)
    tags.close()
    assert origins == ()
    for tag, attrs in tags.found:
        assert tag not in ("script", "style", "iframe", "object", "embed", "form"), clean
        for name, value in attrs:
            assert not name.startswith("on") and name != "style", clean
            if name == "src":
                assert value is not None and value.startswith("data:"), clean
            if name == "href":
                assert value is not None and not value.lower().startswith("javascript"), clean
