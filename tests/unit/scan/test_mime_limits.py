"""The MIME limits of a scan: a message nested too deep, with too many parts or header
fields, or that the parser fails on, is unscannable (its `unscannable_action`) within
bounded time, never a temporary failure; mail within the limits scans as before."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from scanhelpers import message, with_attachment

from pvoq.config.model import AntivirusSettings, ScanSettings
from pvoq.scan.antivirus import EICAR, EicarEngine
from pvoq.scan.message import MimeLimits, ScanMessage, Unscannable, check_structure
from pvoq.scan.pipeline import ANTIVIRUS, Pipeline
from pvoq.scan.verdict import BOUNCE, PASS, QUARANTINE, SKIPPED

INNER = b"Subject: inner\r\n\r\nhello\r\n"
EICAR_PART = (b"Content-Type: application/octet-stream\r\n"
              b"Content-Disposition: attachment; filename=eicar.com\r\n\r\n" + EICAR + b"\r\n")


def multipart_nest(depth: int, inner: bytes = b"Content-Type: text/plain\r\n\r\nhi\r\n") -> bytes:
    """*inner* inside *depth* levels of multipart/mixed."""
    body = inner
    for i in range(depth):
        body = (f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
                + body + f"\r\n--b{i}--\r\n".encode())
    return b"From: a@example.org\r\nSubject: deep\r\n" + body


def rfc822_nest(depth: int, inner: bytes = INNER) -> bytes:
    """*inner* inside *depth* layers of message/rfc822."""
    body = inner
    for _ in range(depth):
        body = b"Content-Type: message/rfc822\r\n\r\n" + body
    return b"From: a@example.org\r\nSubject: layers\r\n" + body


def scan(body: bytes, action: str = "quarantine", **limits: int) -> tuple[float, object]:
    settings = replace(ScanSettings(antivirus=AntivirusSettings(unscannable_action=action)),
                       **limits)
    pipeline = Pipeline(settings, engine=EicarEngine())
    try:
        started = time.monotonic()
        result = pipeline.run(body)
        return time.monotonic() - started, result
    finally:
        pipeline.close()


@pytest.mark.parametrize("body", [multipart_nest(1000), rfc822_nest(2000),
                                  multipart_nest(1000, EICAR_PART),
                                  rfc822_nest(2000, b"Subject: v\r\n\r\n" + EICAR + b"\r\n")],
                         ids=["multipart-1000", "rfc822-2000", "eicar-in-multipart",
                              "eicar-in-rfc822"])
def test_a_deep_nest_is_unscannable_in_bounded_time(body: bytes) -> None:
    """Beyond the depth limit: the unscannable action (here quarantine, in Virus), at once."""
    took, result = scan(body)
    assert took < 1.0
    assert result.action == QUARANTINE  # type: ignore[attr-defined]
    assert [(v.quarantine, v.reason) for v in result.verdicts] == [  # type: ignore[attr-defined]
        ("Virus", "a/v verdict:UNSCANNABLE")]
    assert result.unscannable == "MIME nesting deeper than 50 levels"  # type: ignore[attr-defined]
    assert [t.stage for t in result.trace] == [ANTIVIRUS]  # type: ignore[attr-defined]


@pytest.mark.parametrize("action,expected", [("deliver", PASS), ("bounce", BOUNCE)])
def test_every_unscannable_action_applies(action: str, expected: str) -> None:
    _, result = scan(rfc822_nest(2000), action)
    assert result.action == expected  # type: ignore[attr-defined]


def test_a_parser_failure_is_unscannable_not_a_temporary_failure() -> None:
    """With the limits out of the way, the email package's RecursionError is caught."""
    huge = {"max_mime_depth": 10**6, "max_mime_parts": 10**6}
    for body in (multipart_nest(1000), rfc822_nest(2000)):
        took, result = scan(body, **huge)
        assert took < 10.0
        assert result.action == QUARANTINE  # type: ignore[attr-defined]
        assert "ran out of stack" in result.unscannable  # type: ignore[attr-defined]


def test_mail_within_the_limits_scans_as_before() -> None:
    """Nesting to the limit, attachments and EICAR in a shallow nest are scanned."""
    assert scan(multipart_nest(49))[1].action == PASS  # type: ignore[attr-defined]
    assert scan(rfc822_nest(49))[1].action == PASS  # type: ignore[attr-defined]
    assert scan(with_attachment(b"data"))[1].action == PASS  # type: ignore[attr-defined]
    _, viral = scan(multipart_nest(5, EICAR_PART))
    assert [v.reason for v in viral.verdicts] == [  # type: ignore[attr-defined]
        "a/v verdict:VIRAL Eicar-Test-Signature"]
    assert viral.unscannable == ""  # type: ignore[attr-defined]


def test_the_part_and_header_limits() -> None:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(20))
    wide = b'Subject: wide\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts
    with pytest.raises(Unscannable, match="more than 10 MIME parts"):
        check_structure(wide + b"--b--\r\n", MimeLimits(max_parts=10))
    check_structure(wide + b"--b--\r\n", MimeLimits(max_parts=21))
    many = message(headers={f"X-H{i}": "v" for i in range(30)})
    with pytest.raises(Unscannable, match="more than 20 header fields"):
        check_structure(many, MimeLimits(max_headers=20))
    check_structure(many, MimeLimits(max_headers=40))
    _, result = scan(many, max_headers=20)
    assert result.unscannable == "more than 20 header fields in one header section"  # type: ignore[attr-defined]


def test_folded_and_quoted_content_types_are_followed() -> None:
    body = multipart_nest(3).replace(b'; boundary="b1"', b';\r\n\tboundary=b1')
    with pytest.raises(Unscannable, match="deeper than 2"):
        check_structure(body, MimeLimits(max_depth=2))
    check_structure(body, MimeLimits(max_depth=3))


def test_the_message_view_raises_unscannable_for_a_parser_failure() -> None:
    with pytest.raises(Unscannable):
        ScanMessage(multipart_nest(1000)).attachments  # noqa: B018


def test_a_release_from_virus_is_not_caught_again() -> None:
    """Quarantined as unscannable in Virus, released: later stages are skipped, it passes."""
    pipeline = Pipeline(ScanSettings(antivirus=AntivirusSettings(
        unscannable_action="quarantine")), engine=EicarEngine())
    try:
        result = pipeline.run(rfc822_nest(2000), resume_after=ANTIVIRUS)
    finally:
        pipeline.close()
    assert result.action == PASS
    assert {t.outcome for t in result.trace} == {SKIPPED}
