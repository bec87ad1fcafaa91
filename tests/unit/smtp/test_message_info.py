"""`smtp.message.message_info` reads a plain header block without the email parser, and
reads it exactly as the parser does.

Every message's Subject and Message-ID are read for its log lines; the email
package's parser was a few percent of a busy listener's CPU. The direct read
must give the same text as `header_text` on the parsed block for every block,
plain or not (it hands the others to the parser).
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import compat32

from hypothesis import example, given
from hypothesis import strategies as st

from pvoq.smtp.headers import header_text
from pvoq.smtp.message import MessageInfo, _plain_headers, message_info


def parsed(content: bytes) -> MessageInfo:
    """What the email package's parser makes of the header block (the reference)."""
    end = content.find(b"\r\n\r\n")
    head = BytesHeaderParser(policy=compat32).parsebytes(
        content if end < 0 else content[:end + 2])
    return MessageInfo(subject=header_text(head, "Subject"),
                       message_id=header_text(head, "Message-ID").strip())


_NAMES = [b"Subject", b"subject", b"SUBJECT", b"Message-ID", b"message-id", b"From",
          b"To", b"X-Thing", b"Subject ", b"", b"From ", b"Sub ject", b"Received"]
_PIECES = [b"plain", b" ", b"\t", b":", b"\r\n", b"\r\n ", b"\r\n\t", b"\r", b"\n",
           "Grüße".encode(), b"\xfc\xdf", b"=?utf-8?q?x?=", b"<id@example.org>", b"\x0b",
           b"\x00", "\u2028".encode(), "\x85".encode(), b"\r\n\r\n", b"From x"]
_LINE = st.tuples(st.sampled_from(_NAMES), st.sampled_from([b":", b": ", b":\t", b" :", b""]),
                  st.lists(st.sampled_from(_PIECES), max_size=5)).map(
    lambda t: t[0] + t[1] + b"".join(t[2]))


@given(st.lists(_LINE, max_size=8), st.sampled_from([b"\r\n\r\nbody\r\n", b"\r\n", b"",
                                                     b"\r\n\r\n"]))
@example([b"Subject:\t a\r\n\tb", "Message-ID: <grüße@x>".encode(), b"Subject: c"],
         b"\r\n\r\nbody\r\n")
def test_the_direct_read_matches_the_parser(lines: list[bytes], end: bytes) -> None:
    content = b"\r\n".join(lines) + end
    assert message_info(content) == parsed(content)


def test_a_plain_block_is_read_directly() -> None:
    content = (b"Received: from a (b [127.0.0.1])\r\n\tby c with ESMTP id 1;\r\n"
               b"Subject: \t hello\r\n there\r\nmessage-id: <x@y>  \r\nSubject: second\r\n"
               b"\r\nbody\r\n")
    assert _plain_headers(content[:content.find(b"\r\n\r\n") + 2]) == {
        b"subject": "hello\r\n there", b"message-id": "<x@y>  "}
    assert message_info(content) == parsed(content) == MessageInfo(
        subject="hello\r\n there", message_id="<x@y>")


def test_what_is_not_plain_goes_to_the_parser() -> None:
    for head in (b" continued first\r\nSubject: a\r\n", b"From someone\r\nSubject: a\r\n",
                 b"Subject: a\r\nno colon here\r\n", b"Subject: a\nb\r\n",
                 b"Subject: \xfc\r\n", b"Subject: a"):
        assert _plain_headers(head) is None, head
        assert message_info(head + b"\r\nbody\r\n") == parsed(head + b"\r\nbody\r\n")
