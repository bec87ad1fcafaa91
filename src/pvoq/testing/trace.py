"""What a message relayed by a gateway looks like downstream: its `Received:` line on top.

`relayed(content)` checks that *content* begins with exactly one `Received:`
field added by the gateway (`by <gateway hostname>`) and returns the rest,
which tests compare byte for byte with what was sent.
"""

from __future__ import annotations

import re

from pvoq.testing.localdeploy import GATEWAY

# One header field: its first line and its folded continuation lines.
_FIELD = re.compile(rb"Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*")


def split_received(content: bytes) -> tuple[str, bytes]:
    """(the leading `Received:` field's value, unfolded; the bytes after it)."""
    match = _FIELD.match(content)
    if match is None:
        raise AssertionError(f"no Received: line on top: {content[:120]!r}")
    value = match.group().decode("ascii")[len("Received: "):-2]
    return re.sub(r"\r\n[ \t]", " ", value), content[match.end():]


def relayed(content: bytes, by: str = GATEWAY) -> bytes:
    """*content* without the one `Received:` line *by* put on top (AssertionError if it
    is missing, from another host, or there twice)."""
    value, rest = split_received(content)
    if f" by {by} " not in value:
        raise AssertionError(f"the Received: line on top is not by {by}: {value!r}")
    if rest.startswith(b"Received: ") and f" by {by} " in split_received(rest)[0]:
        raise AssertionError(f"two Received: lines by {by}")
    return rest
