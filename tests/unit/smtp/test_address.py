"""The listener's address parsing gives what aiosmtpd's gives, fast path or not."""

from __future__ import annotations

import types

import pytest
from aiosmtpd.smtp import SMTP

from pvoq.smtp.server import PvoqSMTP

PATHS = [
    "<bob@example.com>", "<bob@example.com> SIZE=100", "<bob@example.com>  SIZE=1 BODY=8BITMIME",
    "<bob@example.com> ", " <bob@example.com>", "<a.b+c@x-y.example>", "<BOB@Example.COM>",
    "bob@example.com", '<"q u"@x.example>', "<a..b@x.example>", "<.a@x.example>",
    "< bob@example.com >", "<@relay.example:bob@x.example>", "<>", "<bob@[192.0.2.1]>",
    "<bob@example.com", "bob", "<bob@example.com> <more>", "<b\u00e9b@example.com>",
    "<bob(comment)@example.com>",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("limit", [0, 2])
def test_same_address_and_parameters_as_aiosmtpd(path: str, limit: int) -> None:
    """Every path, plain or odd, parses to aiosmtpd's (address, rest), local-part limit too."""
    ours = PvoqSMTP._getaddr(types.SimpleNamespace(local_part_limit=limit), path)  # type: ignore[arg-type]
    theirs = SMTP._getaddr(types.SimpleNamespace(local_part_limit=limit), path)  # type: ignore[arg-type]
    assert ours == theirs
