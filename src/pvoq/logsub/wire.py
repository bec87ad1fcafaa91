"""A chunk of mail_logs on the SSH channel: the JSON a gateway answers to `logs chunk`.

`encode_chunk` on the gateway, `decode_chunk` on the manager, which checks
every field of what another machine sent (types, ranges, whole lines, no
more than it asked for) and raises ValueError naming what is wrong.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pvoq.logsub.reader import Chunk, Position, Segment, parse_head


def decode_chunk(text: str, *, max_bytes: int, max_lines: int) -> Chunk:
    """A gateway's answer to `logs chunk` as a `Chunk`; ValueError naming what is wrong.

    The answer comes from another machine: every field is checked, and a chunk
    larger than what was asked for is refused.
    """
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError(f"not JSON: {text.strip()[:120]!r}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")

    def integer(obj: dict[str, Any], key: str) -> int:
        value = obj.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
            raise ValueError(f"{key} is not an integer from 0 to 2^63-1")
        return value

    def position(obj: Any) -> Position:
        if not isinstance(obj, dict) or not isinstance(obj.get("head"), str):
            raise ValueError("position is not an object with inode, offset and head")
        return Position(integer(obj, "inode"), integer(obj, "offset"), parse_head(obj["head"]))

    segments = []
    raw = data.get("segments")
    if not isinstance(raw, list):
        raise ValueError("segments is not a list")
    total = lines = 0
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("data"), str):
            raise ValueError("a segment is not an object with data")
        try:
            body = base64.b64decode(item["data"], validate=True)
        except ValueError:
            raise ValueError("a segment's data is not base64") from None
        if body and not body.endswith(b"\n"):
            raise ValueError("a segment does not end with a whole line")
        pos = position(item)
        start, end = integer(item, "start"), pos.offset
        if end < start:
            raise ValueError("a segment ends before it starts")
        total += len(body)
        lines += body.count(b"\n")
        segments.append(Segment(pos.inode, pos.head, start, end, body))
    if total > max_bytes + len(segments) or lines > max_lines:
        raise ValueError(f"{lines} lines, {total} bytes: more than the {max_lines} lines and "
                         f"{max_bytes} bytes asked for")
    gap = data.get("gap")
    if gap is not None and not isinstance(gap, str):
        raise ValueError("gap is not a string")
    return Chunk(segments, position(data.get("position")), bool(data.get("more")),
                 None if gap is None else gap[:500])


def encode_chunk(chunk: Chunk) -> dict[str, Any]:
    """*chunk* as the JSON a gateway answers (the inverse of `decode_chunk`)."""
    return {"segments": [{"inode": s.inode, "head": s.head, "start": s.start, "offset": s.end,
                          "data": base64.b64encode(s.data).decode("ascii")}
                         for s in chunk.segments],
            "position": {"inode": chunk.position.inode, "offset": chunk.position.offset,
                         "head": chunk.position.head},
            "more": chunk.more, "gap": chunk.gap}
