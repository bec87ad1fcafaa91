"""Reading a mail_logs directory incrementally, across rollovers: the chunks a gateway serves.

A reader's place is a `Position`: the inode of the file it is in, the offset
of the next byte to read, and the file's `head` (a hash of its first line,
so that an inode the file system gave again to a new file is not taken for
the old one). A rollover renames the current file (`mail_logs` →
`mail_logs.@<timestamp>.s`): its inode moves with it, so the reader finds
it under its new name, reads it to its end, then goes on with the later
files in order, the current `mail_logs` last.

Only whole lines are handed out (a line still being written waits for the
next read), except at the end of a file no one writes any more, where a
line cut short by a crash is handed out with its newline added, and a line
longer than a whole chunk, which is cut into lines of the chunk's size. The reader
moves into a later file only once that file has a whole line, so a position
always names a file whose head is known.

If the file a position names is gone (removed by the rollover's retention
before it was read to its end), the reader says so in `Chunk.gap` and starts
again at the oldest file there is: what was in the lost file is lost, but
nothing is read twice. It never writes anything.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

CURRENT = "mail_logs"
HEAD_BYTES = 512           # a file's first line, for its head hash, at most
_HEAD_RE = re.compile(r"[0-9a-f]{1,64}")


@dataclass(frozen=True)
class Position:
    """Where a reader is: (inode, offset) in the file whose first line hashes to *head*."""

    inode: int = 0
    offset: int = 0
    head: str = ""

    @property
    def started(self) -> bool:
        return self.inode != 0


@dataclass(frozen=True)
class Segment:
    """Whole lines read from one file: bytes *start* to *end* of the file *inode*."""

    inode: int
    head: str
    start: int
    end: int
    data: bytes

    @property
    def lines(self) -> int:
        return self.data.count(b"\n")


@dataclass
class Chunk:
    """What one read returns: the segments in order, where the next read starts, whether
    it stopped on its limits (*more*), and what could not be read (*gap*, or None)."""

    segments: list[Segment] = field(default_factory=list)
    position: Position = field(default_factory=Position)
    more: bool = False
    gap: str | None = None

    @property
    def lines(self) -> int:
        return sum(s.lines for s in self.segments)

    @property
    def size(self) -> int:
        return sum(len(s.data) for s in self.segments)


def parse_head(raw: str) -> str:
    """A head as given in a command (`-` for none); ValueError when malformed."""
    if raw in ("", "-"):
        return ""
    if not _HEAD_RE.fullmatch(raw):
        raise ValueError(f"not a head hash: {raw[:80]!r}")
    return raw


def head_of(path: Path) -> str:
    """The head hash of *path*: of its first line, or of its first `HEAD_BYTES` bytes when
    that line is longer. Only asked of a file some whole line was read from, whose start
    no longer changes."""
    try:
        with open(path, "rb") as f:
            first = f.read(HEAD_BYTES)
    except OSError:
        return ""
    end = first.find(b"\n")
    line = first if end < 0 else first[:end + 1]
    return hashlib.sha256(line).hexdigest()[:32] if line else ""


def log_files(directory: Path, name: str = CURRENT) -> list[tuple[Path, os.stat_result]]:
    """The log's files, oldest first: the rolled ones (`<name>.*`) by the time of their
    last write, then the current one. Files that vanish while listed are left out."""
    rolled: list[tuple[Path, os.stat_result]] = []
    current: list[tuple[Path, os.stat_result]] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name != name and not entry.name.startswith(name + "."):
            continue
        if entry.name.endswith(".tmp"):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        (current if entry.name == name else rolled).append((Path(entry.path), st))
    rolled.sort(key=lambda item: (item[1].st_mtime_ns, item[0].name))
    return rolled + current


def read_chunk(directory: Path, position: Position, *, max_bytes: int, max_lines: int,
               name: str = CURRENT) -> Chunk:
    """The whole lines after *position*, at most *max_bytes* and *max_lines* of them."""
    if max_bytes < 1 or max_lines < 1:
        raise ValueError("max_bytes and max_lines must be positive")
    for _ in range(5):  # a rollover between listing and opening: list again
        chunk = _read(directory, position, max_bytes, max_lines, name)
        if chunk is not None:
            return chunk
    return Chunk(position=position, more=True)


def _locate(files: list[tuple[Path, os.stat_result]], position: Position
            ) -> tuple[int, int, str | None]:
    """(index of the file to read, offset in it, gap) for *position*."""
    if not position.started:
        return 0, 0, None
    for i, (path, st) in enumerate(files):
        if st.st_ino == position.inode and head_of(path) == position.head:
            if st.st_size < position.offset:
                return i, 0, (f"{path.name} (inode {position.inode}) is shorter than the "
                              f"offset {position.offset} read before: read again from its start")
            return i, position.offset, None
    return 0, 0, (f"the file read before (inode {position.inode}, offset {position.offset}) "
                  "is gone: lines after that offset in it are lost; resuming at the oldest "
                  "file")


def _read(directory: Path, position: Position, max_bytes: int, max_lines: int,
          name: str) -> Chunk | None:
    files = log_files(directory, name)
    if not files:
        return Chunk(position=position)
    index, offset, gap = _locate(files, position)
    chunk = Chunk(position=position, gap=gap)
    left_bytes, left_lines = max_bytes, max_lines
    while True:
        path, st = files[index]
        last = index == len(files) - 1
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            return None
        with f:
            if os.fstat(f.fileno()).st_ino != st.st_ino:
                return None   # renamed over since the listing
            f.seek(offset)
            data = f.read(left_bytes)
            eof = len(data) < left_bytes or f.read(1) == b""
        cut = data.rfind(b"\n") + 1
        taken, consumed = data[:cut], cut
        if cut == 0 and len(data) == max_bytes:
            taken, consumed = data + b"\n", len(data)  # a line longer than a chunk: cut
        elif eof and not last and cut < len(data):
            # a rolled file no one writes any more, ending in a line a crash cut short
            taken, consumed = data + b"\n", len(data)
        if taken.count(b"\n") > left_lines:
            end = -1
            for _ in range(left_lines):
                end = taken.index(b"\n", end + 1)
            taken = taken[:end + 1]
            consumed = len(taken)
        if consumed:
            head = head_of(path) if st.st_ino != chunk.position.inode or not \
                chunk.position.head else chunk.position.head
            chunk.segments.append(Segment(st.st_ino, head, offset, offset + consumed, taken))
            chunk.position = Position(st.st_ino, offset + consumed, head)
            left_bytes -= len(taken)
            left_lines -= taken.count(b"\n")
        finished = eof and consumed == len(data)
        if not finished:
            # stopped on the limits, or on the unfinished last line of the current file
            chunk.more = not eof or consumed < cut
            return chunk
        if last:
            return chunk
        if left_bytes <= 0 or left_lines <= 0:
            chunk.more = True
            return chunk
        index, offset = index + 1, 0
