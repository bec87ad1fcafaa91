"""The spool log: group commit, replay of a torn tail, segments, compaction, read-only use."""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvoq.spool import log as spool_log
from pvoq.spool.log import ENTRY, PUT, REMOVE, Record, SpoolLog, SpoolLogError

BODY = b"Subject: x\r\n\r\n" + b"y" * 1000 + b"\r\n"


def put(mid: int, body: bytes = BODY) -> Record:
    return Record(PUT, mid, b'{"mid": %d}' % mid, body)


class TestReplay:
    def test_a_torn_tail_is_cut_and_reported(self, tmp_path: Path) -> None:
        """Half a record at the end (a crash mid-write) is removed; the records before stay."""
        log = SpoolLog(tmp_path)
        log.commit([put(1), put(2)])
        log.close()
        (segment,) = tmp_path.glob("log-*.seg")
        whole = segment.stat().st_size
        with open(segment, "ab") as f:
            f.write(put(3).encode()[:-10])
        again = SpoolLog(tmp_path)
        assert again.mids() == [1, 2]
        assert again.damaged and "removed" in again.damaged[0]
        assert segment.stat().st_size == whole
        again.commit([put(4)])  # appends after the cut, where replay will find it
        again.close()
        assert SpoolLog(tmp_path).mids() == [1, 2, 4]

    def test_a_record_with_a_bad_checksum_ends_the_replay(self, tmp_path: Path) -> None:
        """A flipped byte is detected by the CRC: nothing from that record on is believed."""
        log = SpoolLog(tmp_path)
        log.commit([put(1)])
        log.commit([put(2)])
        log.close()
        (segment,) = tmp_path.glob("log-*.seg")
        data = bytearray(segment.read_bytes())
        data[-5] ^= 0xFF  # inside MID 2's body
        segment.write_bytes(bytes(data))
        assert SpoolLog(tmp_path).mids() == [1]

    def test_updates_and_removals_replay_in_order(self, tmp_path: Path) -> None:
        """The last entry of a message wins; a removed message stays removed."""
        log = SpoolLog(tmp_path)
        log.commit([put(1), put(2), Record(ENTRY, 1, b'{"v": 2}'), Record(REMOVE, 2),
                    Record(ENTRY, 2, b'{"late": true}')])
        log.close()
        again = SpoolLog(tmp_path)
        assert again.mids() == [1]
        assert again.entry(1) == b'{"v": 2}' and again.body(1) == BODY


class TestSegments:
    def test_dead_segments_are_deleted_oldest_first(self, tmp_path: Path) -> None:
        """Once nothing lives in the older segments they go; the state survives a restart."""
        log = SpoolLog(tmp_path, segment_bytes=4096)
        for mid in range(1, 21):
            log.commit([put(mid)])
        assert len(list(tmp_path.glob("log-*.seg"))) > 3
        for mid in range(1, 20):
            log.commit([Record(REMOVE, mid)])
        log.commit([Record(REMOVE, 999)])  # one more batch: maintenance runs between batches
        log.close()
        assert len(list(tmp_path.glob("log-*.seg"))) <= 2
        assert SpoolLog(tmp_path).mids() == [20]

    def test_a_long_lived_message_is_moved_forward(self, tmp_path: Path) -> None:
        """A message alone in a dead segment is copied forward so the segment can go."""
        log = SpoolLog(tmp_path, segment_bytes=4096)
        log.commit([put(1, b"keep me" * 100)])
        first = min(tmp_path.glob("log-*.seg"))
        for mid in range(2, 40):
            log.commit([put(mid)])
            log.commit([Record(REMOVE, mid)])
        log.commit([Record(ENTRY, 1, b'{"state": "queued"}')])
        log.close()
        assert not first.exists()
        again = SpoolLog(tmp_path)
        assert again.mids() == [1]
        assert again.body(1) == b"keep me" * 100 and again.entry(1) == b'{"state": "queued"}'
        assert len(list(tmp_path.glob("log-*.seg"))) <= 3


    def test_a_live_oldest_segment_does_not_pin_the_dead_ones_after_it(
            self, tmp_path: Path) -> None:
        """Held messages filling the oldest segment move forward once the log is mostly dead."""
        log = SpoolLog(tmp_path, segment_bytes=4096)
        for mid in range(1, 4):
            log.commit([put(mid)])  # held for long: they fill the first segment
        for mid in range(100, 160):
            log.commit([put(mid)])
            log.commit([Record(REMOVE, mid)])
        log.close()
        segments = list(tmp_path.glob("log-*.seg"))
        assert len(segments) <= 4, segments
        again = SpoolLog(tmp_path)
        assert again.mids() == [1, 2, 3] and again.body(2) == BODY


class TestWriting:
    def test_changes_waiting_for_the_disk_share_one_flush(self, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
        """Changes that arrive while a flush runs are committed by the next single flush."""
        gate = threading.Event()
        flushes: list[int] = []
        real = os.fdatasync

        def slow_fdatasync(fd: int) -> None:
            flushes.append(fd)
            if len(flushes) == 1:
                gate.wait(5)  # the first batch holds the disk while the others arrive
            real(fd)

        monkeypatch.setattr(spool_log.os, "fdatasync", slow_fdatasync)
        log = SpoolLog(tmp_path)

        async def main() -> None:
            first = asyncio.ensure_future(log.commit_async([put(1)]))
            while not flushes:
                await asyncio.sleep(0.01)
            rest = asyncio.gather(*(log.commit_async([put(mid)]) for mid in range(2, 22)))
            await asyncio.sleep(0.05)
            gate.set()
            await asyncio.wait_for(asyncio.gather(first, rest), 10)

        asyncio.run(main())
        log.close()
        assert len(flushes) == 2
        assert SpoolLog(tmp_path).mids() == list(range(1, 22))

    def test_a_failed_write_reaches_its_callers_and_is_cut_back(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A full disk fails the batch (no 250 for it) and leaves no half record behind."""
        log = SpoolLog(tmp_path)
        log.commit([put(1)])
        real = os.writev
        calls = {"n": 0}

        def full_disk(fd: int, parts: list[memoryview]) -> int:
            calls["n"] += 1
            if calls["n"] == 1:
                os.write(fd, b"".join(parts)[:100])
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, parts)

        monkeypatch.setattr(spool_log.os, "writev", full_disk)
        with pytest.raises(OSError, match="No space"):
            log.commit([put(2)])
        log.commit([put(3)])
        log.close()
        again = SpoolLog(tmp_path)
        assert again.mids() == [1, 3] and not again.damaged

    def test_read_only_sees_everything_and_writes_nothing(self, tmp_path: Path) -> None:
        """An operator's read-only view lists the messages; it refuses to change the log."""
        log = SpoolLog(tmp_path)
        log.commit([put(1), put(2)])
        view = SpoolLog(tmp_path, readonly=True)
        assert view.mids() == [1, 2] and view.body(2) == BODY
        with pytest.raises(SpoolLogError, match="read-only"):
            view.commit([put(3)])
        view.close()
        log.close()


class TestLargeBodies:
    def test_short_writes_across_parts_keep_every_byte_in_order(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A record's header, entry and body go out without being joined; a kernel that
        takes a few bytes at a time (cutting inside and across the parts) loses none."""
        real = os.writev

        def trickle(fd: int, parts: list[memoryview]) -> int:
            return real(fd, [parts[0][:7]])  # at most 7 bytes of the first part per call

        log = SpoolLog(tmp_path)
        body = bytes(range(256)) * 40
        monkeypatch.setattr(spool_log.os, "writev", trickle)
        log.commit([Record(PUT, 7, b'{"mid":7}', body), Record(PUT, 8, b'{"mid":8}', b"x")])
        monkeypatch.undo()
        log.close()
        again = SpoolLog(tmp_path)
        assert again.body(7) == body and again.body(8) == b"x" and not again.damaged
        again.close()


class TestBodyFile:
    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.sampled_from([b"a", b"bbbbbbbbbbbb", b"\r\n", b"\r", b"\n", b"."]),
                    max_size=60).map(b"".join), st.integers(min_value=1, max_value=9))
    def test_pieces_join_to_the_body_and_end_after_a_crlf(self, body: bytes,
                                                          chunk: int) -> None:
        """Read a piece at a time: every byte once, in order; a piece but the last ends
        after a CRLF, or inside a line longer than a piece, but never after a lone CR
        that an LF follows."""
        with tempfile.TemporaryDirectory() as root:
            log = SpoolLog(Path(root))
            log.commit([Record(PUT, 1, b"{}", body)])
            with log.open_body(1) as opened:
                pieces = list(opened.pieces(chunk))
            log.close()
        assert b"".join(pieces) == body and opened.size == len(body)
        for piece, after in zip(pieces, pieces[1:], strict=False):
            assert piece and not (piece.endswith(b"\r") and after.startswith(b"\n"))
            assert piece.endswith(b"\r\n") or b"\r\n" not in piece

    def test_an_opened_body_stays_readable_when_its_segment_goes(self, tmp_path: Path) -> None:
        """The message is removed and its segment deleted while a delivery reads it: the
        delivery's own descriptor still reads every byte."""
        log = SpoolLog(tmp_path, segment_bytes=1)
        body = b"line\r\n" * 5000
        log.commit([Record(PUT, 1, b"{}", body)])
        opened = log.open_body(1)
        first = sorted(tmp_path.glob("log-*.seg"))[0]
        log.commit([Record(PUT, 2, b"{}", b"x")])  # rolls to a new segment
        log.commit([Record(REMOVE, 1)])
        log.commit([Record(PUT, 3, b"{}", b"y")])
        assert not first.exists()
        assert b"".join(opened.pieces(1000)) == body and opened.read() == body
        opened.close()
        log.close()

    def test_the_writer_keeps_no_body_once_it_is_written(self, tmp_path: Path) -> None:
        """Once a PUT is durable, the writer thread, waiting for the next change, holds no
        reference to its body (a body may be tens of MB)."""
        import sys
        import time

        log = SpoolLog(tmp_path)
        body = os.urandom(1000)
        alone = sys.getrefcount(body)
        log.commit([Record(PUT, 1, b"{}", body)])
        end = time.monotonic() + 5
        while sys.getrefcount(body) > alone and time.monotonic() < end:
            time.sleep(0.01)
        assert sys.getrefcount(body) == alone
        log.close()
