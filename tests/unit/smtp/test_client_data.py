"""Sending DATA in dot-stuffed chunks: the pieces, and a real SMTP server receiving them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as AioSMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pvoq.smtp.client import cut_pieces, send_data, stuffed_chunks
from pvoq.smtp.wire import SmtpWire


def wire(body: bytes) -> bytes:
    """What RFC 5321 sends for *body* (CRLF line ends): each line starting with a dot
    gets another, then the end marker."""
    lines = body.split(b"\r\n")
    stuffed = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
    return stuffed + (b".\r\n" if body.endswith(b"\r\n") or not body else b"\r\n.\r\n")


crlf_bodies = st.lists(st.sampled_from([b"\r\n", b".", b"..", b"x", b"xxxxxxx", b". \r\n",
                                        b"\r\n.\r\n", b"\r\n..\r\n"]),
                       max_size=60).map(b"".join)


@settings(max_examples=300)
@given(crlf_bodies, st.integers(min_value=1, max_value=40))
@example(b".\r\n.\r\n", 1)
@example(b"ab\r\n.c\r\n", 4)
def test_chunks_join_to_the_stuffed_data_at_any_chunk_size(body: bytes, chunk: int) -> None:
    assert b"".join(stuffed_chunks(body, chunk)) == wire(body)


def test_a_chunk_is_cut_after_a_crlf_when_a_line_ends_inside_it() -> None:
    pieces = list(stuffed_chunks(b"abc\r\ndefgh\r\n.ij\r\n", 8))
    assert pieces[0] == b"abc\r\n" and pieces[-1] == b".\r\n"
    assert b"".join(pieces) == b"abc\r\ndefgh\r\n..ij\r\n.\r\n"


class Keep:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.got.append(envelope.original_content)
        return "250 OK"


class Pieces:
    """A body read a piece at a time, as the spool's BodyFile reads it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.size = len(body)

    def read(self) -> bytes:
        return self.body

    def pieces(self, chunk: int = 1000) -> Iterator[bytes]:
        return cut_pieces(self.body, chunk)


BIG = b"".join(b".line %d with a dot\r\n..two dots\r\nplain %d\r\n" % (n, n)
               for n in range(20_000))


@pytest.mark.parametrize(("body", "arrives"), [
    (BIG, BIG),
    (Pieces(BIG), BIG),
    (Pieces(b"bare\nLF\r\n.dot\n" * 10), b"bare\r\nLF\r\n.dot\r\n" * 10),
])
def test_a_large_body_arrives_byte_identical_over_a_real_connection(
        body: bytes | Pieces, arrives: bytes) -> None:
    """Sent in small chunks (dots at line starts, lines across chunk edges) to aiosmtpd on
    127.0.0.1, from bytes or read a piece at a time: the server reads exactly the body, and
    the connection takes a next message. A body with bare line ends arrives with its line
    ends made CRLF."""

    async def main() -> list[bytes]:
        keep = Keep()
        server = await asyncio.get_running_loop().create_server(
            lambda: AioSMTP(keep, data_size_limit=None), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            wire = await SmtpWire.connect("127.0.0.1", port, timeout_s=20)
            assert (await wire.reply()).code == 220
            assert (await wire.command("EHLO client.example")).code == 250
            for message in (body, b"small\r\n"):
                assert (await wire.command("MAIL FROM:<a@example.com>")).code == 250
                assert (await wire.command("RCPT TO:<b@example.com>")).code == 250
                reply = await send_data(wire, message, stream_above=0, chunk=4099)
                assert reply.code == 250
            assert (await wire.command("QUIT")).code == 221
            wire.close()
        finally:
            server.close()
            await server.wait_closed()
        return keep.got

    assert asyncio.run(asyncio.wait_for(main(), 60)) == [arrives, b"small\r\n"]
