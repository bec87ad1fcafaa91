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


@pytest.mark.parametrize(("path", "taken"), [
    ("<" + "a" * 64 + "@" + "b" * 185 + ".org>", True),        # 254 octets
    ("<" + "a" * 64 + "@" + "b" * 186 + ".org>", False),       # 255
    ("<" + "ü" * 100 + "@example.org>", True),                 # 212 octets
    ("<" + "ü" * 125 + "@example.org>", False),                # 262 octets, 137 characters
    ("<" + "a" * 60 + "@" + "b" * 4940 + ".org>", False),
])
def test_addresses_longer_than_rfc5321_allows_are_refused(path: str, taken: bool) -> None:
    """A path is at most 256 octets with its <> (RFC 5321 4.5.3.1.3): CPQ metadata
    refuses longer addresses, so a listener must not take them either."""
    address, _ = PvoqSMTP._getaddr(types.SimpleNamespace(local_part_limit=0), path)  # type: ignore[arg-type]
    assert (address is not None) == taken


@pytest.mark.parametrize("path", ['<"a\x1bb"@example.org>', '<"a\x00b"@example.org>',
                                  '<"a\x7fb"@example.org>'])
def test_control_characters_in_an_address_are_refused(path: str) -> None:
    """RFC 5321's quoted strings allow no control characters; CPQ metadata refuses them."""
    assert PvoqSMTP._getaddr(types.SimpleNamespace(local_part_limit=0), path) == (None, None)  # type: ignore[arg-type]
