"""Fuzzing what an SMTP client sends: the DATA reader, paths, and the header block.

The properties:

- `read_data` over any bytes, cut into any packets, gives what a plain
  reference reading of the whole stream gives (the end, dot-stuffing, the
  size and line limits, what stays unread), or None when the stream ends
  first; never an exception, whatever the packets;
- the listener's path parsing (`PvoqSMTP._getaddr`) takes or refuses any
  argument without an exception, and what it takes `address_fault` and the
  CPQ metadata take too (what a gateway accepted, it can ship);
- `message_info` reads the Subject and Message-ID of any header block, and
  `log_safe` leaves no control character in what it gives.

Each example within the profile's deadline (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import types
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pvoq.cpq.transfer import MetadataError, parse_transfer
from pvoq.smtp.data import END, NOMINAL, TOO_LONG, TOO_MUCH, DataBlock, read_data
from pvoq.smtp.headers import log_safe
from pvoq.smtp.limits import MAX_ADDRESS_OCTETS, address_fault
from pvoq.smtp.server import PvoqSMTP, message_info

# -- DATA -----------------------------------------------------------------------------------


def reference(data: bytes, size_limit: int | None, line_limit: int
              ) -> tuple[DataBlock, bytes] | None:
    """The reading RFC 5321 describes, on the whole stream at once."""
    if data.startswith(b".\r\n"):
        end, cut = 0, 3
    else:
        found = data.find(END)
        if found < 0:
            return None
        end, cut = found + 2, found + len(END)
    block, rest = data[:end], data[cut:]
    if size_limit and len(block) > size_limit:
        return DataBlock(TOO_MUCH, b""), rest
    if block and max(len(line) for line in block.split(b"\r\n")) + 2 > line_limit:
        return DataBlock(TOO_LONG, b""), rest
    lines = [line[1:] if line.startswith(b".") else line for line in block.split(b"\r\n")]
    return DataBlock(NOMINAL, b"\r\n".join(lines)), rest


def feed_and_read(packets: list[bytes], size_limit: int | None, line_limit: int,
                  spill_dir: Path | None = None) -> tuple[DataBlock, bytes] | None:
    async def main() -> tuple[DataBlock, bytes] | None:
        reader = asyncio.StreamReader(limit=1001)

        async def feed() -> None:
            for packet in packets:
                await asyncio.sleep(0)
                reader.feed_data(packet)
            reader.feed_eof()

        feeding = asyncio.ensure_future(feed())
        block = await asyncio.wait_for(
            read_data(reader, size_limit=size_limit, line_limit=line_limit,
                      spill_dir=spill_dir), 10)
        await feeding
        if block is None:
            return None
        return block, bytes(reader._buffer)  # type: ignore[attr-defined]
    return asyncio.run(main())


data_bytes = st.one_of(
    st.binary(max_size=600),
    st.lists(st.sampled_from([b"\r\n", b".", b"..", b"\r", b"\n", b"x", b"xxxxxxxxxx",
                              b"\r\n.\r\n", b".\r\n", b"\r\n..\r\n", b"QUIT\r\n"]),
             max_size=80).map(b"".join))


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(marks, marks[1:], strict=False)]


@settings(max_examples=300)
@given(data_bytes, st.lists(st.integers(min_value=0), max_size=10),
       st.sampled_from([None, 0, 1, 5, 20, 100]), st.sampled_from([3, 5, 12, 1001]))
@example(b".\r\n", [1, 2], None, 1001)
@example(b"x\r\n.\r", [], None, 1001)
@example(b"..\r\n.\r\n", [], 1, 1001)
def test_read_data_is_the_reference_in_any_packets(data: bytes, points: list[int],
                                                   size_limit: int | None,
                                                   line_limit: int) -> None:
    assert feed_and_read(cut(data, points), size_limit, line_limit) == \
        reference(data, size_limit, line_limit)


# -- paths ----------------------------------------------------------------------------------

path_text = st.one_of(
    st.text(max_size=80),
    st.builds(lambda local, domain, tail: f"<{local}@{domain}>{tail}",
              st.text(max_size=70), st.text(max_size=300),
              st.sampled_from(["", " SIZE=1", " BODY=8BITMIME", "  ", " <x>", "\x00"])),
    st.sampled_from(['<"a\\"b"@x.example>', "<@a,@b:c@d>", "<a@[IPv6:::1]>", "<" * 50,
                     '"' * 51, "<\udcff@example.org>", "<a@b>" + " X=" * 100,
                     "<" + "a" * 250 + "@b.c>", "<a(b(c(d)))@e>"]))


def shipped(address: str) -> dict[str, object]:
    """A quarantine transfer of a message from and to *address*."""
    return {"v": 1, "kind": "quarantine", "transfer_id": "q-GW1-1-0123",
            "origin": {"hostname": "gw1.example.com", "serial": "GW1", "mid": 1},
            "sender": address, "recipients": [{"rid": 0, "address": address}],
            "quarantines": [{"name": "Policy", "reason": "r", "stage": "message_filters"}],
            "received": 1.0, "size": 1}


@settings(max_examples=200)
@given(path_text, st.sampled_from([0, 64]))
@example("<\udcff@example.org>", 0)
def test_any_path_is_taken_or_refused_and_what_is_taken_ships(arg: str, limit: int) -> None:
    listener = types.SimpleNamespace(local_part_limit=limit)
    addr, rest = PvoqSMTP._getaddr(listener, arg)  # type: ignore[arg-type]
    if addr is None:
        assert rest is None
        return
    assert isinstance(addr, str) and isinstance(rest, str)
    if not addr:
        return  # the null reverse-path
    assert address_fault(addr) is None
    assert len(addr.encode("utf-8")) <= MAX_ADDRESS_OCTETS
    try:
        parse_transfer(shipped(addr))
    except MetadataError as exc:
        raise AssertionError(f"the listener took {addr!r}, CPQ refuses it: {exc}") from None


@given(st.text(max_size=300))
def test_address_fault_takes_any_text(address: str) -> None:
    fault = address_fault(address)
    assert fault is None or isinstance(fault, str)


# -- the header block -----------------------------------------------------------------------

header_block = st.one_of(
    st.binary(max_size=800),
    st.lists(st.sampled_from([
        b"Subject: plain\r\n", "Subject: Grüße\r\n".encode(), b"Subject: \xff\xfe\r\n",
        b"Subject: =?utf-8?b?////?=\r\n", b"Subject: =?idna?q?=FF?=\r\n", b" folded\r\n",
        b"Message-ID: <a@b>\r\n", b"Message-ID:\r\n", b"\r\n", b"X: \x00\x1b[31m\r\n",
        b"Subject: \xe2\x80\xa8line\r\n", b"Subject: a\rb\r\n", b"From nobody\r\n",
        b"Subject: " + b"x" * 2000 + b"\r\n"]), max_size=60).map(b"".join))

_CONTROL = {*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0),
            0x2028, 0x2029}


@settings(max_examples=300)
@given(header_block)
def test_message_info_reads_any_header_block(content: bytes) -> None:
    info = message_info(content)
    for text in (info.subject, info.message_id):
        assert isinstance(text, str)
        shown = log_safe(text)
        assert not any(ord(c) in _CONTROL for c in shown), shown


@settings(max_examples=200)
@given(data_bytes, st.lists(st.integers(min_value=0), max_size=10),
       st.sampled_from([None, 5, 100]), st.sampled_from([5, 12, 1001]))
def test_read_data_gathered_in_a_file_is_the_reference(data: bytes, points: list[int],
                                                       size_limit: int | None,
                                                       line_limit: int) -> None:
    """The same with every message gathered in a temporary file from its first bytes."""
    import tempfile

    from pvoq.smtp import data as data_module

    spill = data_module.SPILL_ABOVE
    data_module.SPILL_ABOVE = 0
    try:
        with tempfile.TemporaryDirectory() as root:
            got = feed_and_read(cut(data, points), size_limit, line_limit, spill_dir=Path(root))
            assert not list(Path(root).iterdir())
    finally:
        data_module.SPILL_ABOVE = spill
    assert got == reference(data, size_limit, line_limit)
