"""Message builders shared by the scan unit tests."""

from __future__ import annotations

import struct
import zlib
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from pvoq.testing.clamd import ClamdProcess, ClamdUnavailable


def message(subject: str = "Lunch", body: str = "See you at noon.", *,
            headers: dict[str, str] | None = None) -> bytes:
    """A plain-text message with CRLF line ends."""
    lines = ["From: alice@example.org", "To: bob@example.com", f"Subject: {subject}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def with_attachment(payload: bytes, *, filename: str = "file.bin", subject: str = "Report",
                    subtype: str = "octet-stream", text: str = "Please see the attachment."
                    ) -> bytes:
    """A multipart message carrying *payload* as a base64 attachment."""
    msg = MIMEMultipart()
    msg["From"], msg["To"], msg["Subject"] = "alice@example.org", "bob@example.com", subject
    msg.attach(MIMEText(text))
    part = MIMEApplication(payload, subtype, Name=filename)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    msg.attach(part)
    return msg.as_bytes()


def start_clamd(root: Path, **options: object) -> ClamdProcess:
    """A running private clamd; a missing clamd fails the test with the reason (never skips)."""
    proc = ClamdProcess(root, **options)  # type: ignore[arg-type]
    try:
        proc.start()
    except ClamdUnavailable as exc:
        pytest.fail(f"a real clamd is required (Debian package clamav-daemon): {exc}")
    return proc


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


def encrypted_zip(name: str, data: bytes, password: bytes) -> bytes:
    """A zip archive with one entry, stored and encrypted with PKWARE's traditional cipher."""
    keys = [0x12345678, 0x23456789, 0x34567890]

    def update(b: int) -> None:
        keys[0] = (keys[0] >> 8) ^ _CRC[(keys[0] ^ b) & 0xFF]
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = (keys[2] >> 8) ^ _CRC[(keys[2] ^ (keys[1] >> 24)) & 0xFF]

    def encrypt(plain: bytes) -> bytes:
        out = bytearray()
        for p in plain:
            t = (keys[2] | 2) & 0xFFFF
            out.append(p ^ (((t * (t ^ 1)) >> 8) & 0xFF))
            update(p)
        return bytes(out)

    for b in password:
        update(b)
    crc = zlib.crc32(data)
    body = encrypt(bytes(11) + bytes([crc >> 24])) + encrypt(data)
    fn = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 1, 0, 0, 0, crc, len(body), len(data),
                        len(fn), 0) + fn + body
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 1, 0, 0, 0, crc, len(body),
                          len(data), len(fn), 0, 0, 0, 0, 0, 0) + fn
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local), 0)
    return local + central + end
