"""Reading DATA as a block: the end marker, dot-stuffing, limits, pipelined commands."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pvoq.smtp import data as data_module
from pvoq.smtp.data import FAILED, NOMINAL, TOO_LONG, TOO_MUCH, DataBlock, read_data
from pvoq.smtp.message import has_bare_newline


def read(chunks: list[bytes], *, eof: bool = False, size_limit: int | None = 10_000,
         line_limit: int = 1001, prefix: bytes = b"") -> tuple[DataBlock | None, bytes]:
    """Feed *chunks* one by one (as the network would) and read; also what stays unread."""
    async def main() -> tuple[DataBlock | None, bytes]:
        reader = asyncio.StreamReader(limit=1001)

        async def feed() -> None:
            for chunk in chunks:
                await asyncio.sleep(0)
                reader.feed_data(chunk)
            if eof:
                reader.feed_eof()

        feeding = asyncio.ensure_future(feed())
        block = await asyncio.wait_for(read_data(reader, size_limit=size_limit,
                                                 line_limit=line_limit, prefix=prefix), 5)
        await feeding
        rest = bytes(reader._buffer)  # type: ignore[attr-defined]
        return block, rest

    return asyncio.run(main())


class TestEnd:
    def test_a_message_ends_at_crlf_dot_crlf_and_keeps_its_last_crlf(self) -> None:
        """The data is everything before the lone dot, its last line's CRLF included."""
        block, rest = read([b"Subject: x\r\n\r\nhello\r\n.\r\n"])
        assert block == DataBlock(NOMINAL, b"Subject: x\r\n\r\nhello\r\n") and rest == b""

    def test_an_empty_message(self) -> None:
        """A dot right after DATA is an empty message."""
        assert read([b".\r\nQUIT\r\n"]) == (DataBlock(NOMINAL, b""), b"QUIT\r\n")

    def test_the_end_split_across_packets(self) -> None:
        """The end marker is found when it arrives in pieces, byte by byte even."""
        data = b"a\r\nb\r\n.\r\n"
        block, _ = read([bytes([c]) for c in data])
        assert block == DataBlock(NOMINAL, b"a\r\nb\r\n")

    def test_pipelined_commands_stay_for_the_command_loop(self) -> None:
        """What follows the end (RFC 2920) is left in the reader, untouched."""
        block, rest = read([b"x\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"])
        assert block is not None and block.content == b"x\r\n"
        assert rest == b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"

    def test_a_bare_lf_around_the_dot_ends_nothing(self) -> None:
        """Only <CRLF>.<CRLF> ends the data: `\\n.\\n` is content (refused later as bare LF)."""
        block, _ = read([b"one\n.\ntwo\r\n.\r\n"])
        assert block == DataBlock(NOMINAL, b"one\n.\ntwo\r\n")

    def test_the_connection_ending_first_gives_nothing(self) -> None:
        """No end marker before the connection ends: no message."""
        assert read([b"half a message\r\n"], eof=True)[0] is None


class TestTransparency:
    def test_dot_stuffing_is_removed_on_every_line(self) -> None:
        """A leading dot doubled by the client is single again (RFC 5321 4.5.2), first line too."""
        block, _ = read([b"..first\r\nmiddle\r\n..\r\n...three\r\n.\r\n"])
        assert block == DataBlock(NOMINAL, b".first\r\nmiddle\r\n.\r\n..three\r\n")


class TestLimits:
    def test_too_much_data_is_refused_and_the_rest_is_still_read(self) -> None:
        """Past the size limit the data is dropped as it comes; the next command survives."""
        chunks = [b"x" * 70 + b"\r\n"] * 200 + [b".\r\nQUIT\r\n"]
        block, rest = read(chunks, size_limit=5_000)
        assert block == DataBlock(TOO_MUCH, b"") and rest == b"QUIT\r\n"

    def test_exactly_at_the_size_limit_passes(self) -> None:
        """The limit counts line bytes with their CRLF, as aiosmtpd does."""
        body = b"y" * 98 + b"\r\n"
        assert read([body * 10 + b".\r\n"], size_limit=1000)[0] == DataBlock(NOMINAL, body * 10)
        assert read([body * 10 + b"z\r\n.\r\n"], size_limit=1000)[0] == DataBlock(TOO_MUCH, b"")

    def test_a_line_over_the_line_limit_is_refused(self) -> None:
        """A line of more than 1001 octets with its CRLF (RFC 5321 4.5.3.1.6) is too long."""
        ok = b"a" * 999 + b"\r\n"
        assert read([ok + b".\r\n"])[0] == DataBlock(NOMINAL, ok)
        assert read([b"a" * 1000 + b"\r\n.\r\n"])[0] == DataBlock(TOO_LONG, b"")


class TestSpill:
    """A large message is gathered in a temporary file as it arrives (`SPILL_ABOVE`)."""

    def spilled(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, chunks: list[bytes],
                **options: object) -> tuple[DataBlock | None, bytes]:
        monkeypatch.setattr(data_module, "SPILL_ABOVE", 10)

        async def main() -> tuple[DataBlock | None, bytes]:
            reader = asyncio.StreamReader(limit=1001)

            async def feed() -> None:
                for chunk in chunks:
                    await asyncio.sleep(0)
                    reader.feed_data(chunk)

            feeding = asyncio.ensure_future(feed())
            block = await asyncio.wait_for(read_data(
                reader, size_limit=None, line_limit=1001, prefix=b"Received: x\r\n",
                spill_dir=tmp_path, **options), 5)  # type: ignore[arg-type]
            await feeding
            return block, bytes(reader._buffer)  # type: ignore[attr-defined]

        return asyncio.run(main())

    def test_a_spilled_message_reads_as_one_held_in_memory(
            self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Dots unstuffed across packets, the prefix first, the pipelined rest left: the
        same as without a file, and no file left behind."""
        lines = b"".join(b"..line %d\r\n..\r\nplain\r\n" % n for n in range(200))
        wire = lines + b".\r\nQUIT\r\n"
        chunks = [wire[i:i + 37] for i in range(0, len(wire), 37)]
        block, rest = self.spilled(monkeypatch, tmp_path, chunks)
        expected = b"Received: x\r\n" + lines.replace(b"\r\n.", b"\r\n")[1:]
        assert block == DataBlock(NOMINAL, expected) and rest == b"QUIT\r\n"
        assert list(tmp_path.iterdir()) == []

    def test_a_file_that_cannot_be_written_fails_the_message_not_the_session(
            self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """The data is read to its end and discarded, the block says what failed (the
        client gets a 4xx and retries); what the client pipelined stays for the session."""
        def full(*args: object, **kwargs: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(data_module.tempfile, "TemporaryFile", full)
        wire = b"x" * 50 + b"\r\n" + b"y\r\n" * 100 + b".\r\nQUIT\r\n"
        block, rest = self.spilled(monkeypatch, tmp_path, [wire[:60], wire[60:]])
        assert block is not None and block.state == FAILED and "No space" in block.error
        assert rest == b"QUIT\r\n"


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n."]),
                     max_size=40).map(b"".join),
       cut=st.integers(min_value=1, max_value=9),
       prefix=st.sampled_from([b"", b"Received: x\r\n", b"Received: x\ry\r\n"]))
@example(text=b"a\nb", cut=1, prefix=b"")
@example(text=b"a\r", cut=2, prefix=b"")
def test_the_bare_cr_or_lf_found_while_reading_is_the_handlers_check(
        text: bytes, cut: int, prefix: bytes) -> None:
    """Whatever the packets, the block says there is a bare CR or LF exactly when the
    handler's own check on the whole content (the prefix first) would."""
    wire = text + b"\r\n.\r\n"
    block, _ = read([wire[i:i + cut] for i in range(0, len(wire), cut)], eof=True,
                    prefix=prefix)
    if block is not None and block.state == NOMINAL:
        assert block.bare == has_bare_newline(block.content)
