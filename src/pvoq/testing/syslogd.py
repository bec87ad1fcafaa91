"""A syslog receiver for the tests: RFC 5424 messages over TCP (octet counting) or UDP.

`SyslogReceiver("tcp"|"udp", port=0)` listens on 127.0.0.1 in a thread and
keeps every message it gets; `parse` checks a message against the RFC 5424
grammar (independently of `pvoq.maillog.syslog`) and returns its fields.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_MESSAGE = re.compile(
    rb"<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) "
    rb"(?P<timestamp>-|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)) "
    rb"(?P<hostname>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) "
    rb"(?P<msgid>[!-~]{1,32}) (?P<sd>-|(?:\[[^\]]*\])+)(?: (?P<msg>.*))?", re.DOTALL)
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Message:
    facility: int
    severity: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    structured_data: str
    text: str


def parse(raw: bytes) -> Message:
    """*raw* as an RFC 5424 message; ValueError naming what does not fit."""
    found = _MESSAGE.fullmatch(raw)
    if found is None:
        raise ValueError(f"not an RFC 5424 message: {raw[:200]!r}")
    pri = int(found["pri"])
    if pri > 191 or found["version"] != b"1":
        raise ValueError(f"bad PRI or VERSION: {raw[:20]!r}")
    body = found["msg"] or b""
    text = body[len(BOM):].decode("utf-8") if body.startswith(BOM) else body.decode("ascii")
    return Message(pri // 8, pri % 8, found["timestamp"].decode(), found["hostname"].decode(),
                   found["app"].decode(), found["procid"].decode(), found["msgid"].decode(),
                   found["sd"].decode(), text)


class SyslogReceiver:
    """Receives syslog messages on 127.0.0.1 (*protocol* tcp or udp) until `close`."""

    def __init__(self, protocol: str, port: int = 0) -> None:
        self.protocol = protocol
        self.raw: list[bytes] = []
        self.bad_frames: list[bytes] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
        self._sock = socket.socket(socket.AF_INET, kind)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port = self._sock.getsockname()[1]
        self._sock.settimeout(0.1)
        if kind == socket.SOCK_STREAM:
            self._sock.listen(8)
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                if self.protocol == "udp":
                    data = self._sock.recv(65536)
                    with self._lock:
                        self.raw.append(data)
                    continue
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            reader = threading.Thread(target=self._read_stream, args=(conn,), daemon=True)
            self._threads.append(reader)
            reader.start()

    def _read_stream(self, conn: socket.socket) -> None:
        buffer = b""
        conn.settimeout(0.1)
        with conn:
            while not self._closing.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while True:
                    length, space, rest = buffer.partition(b" ")
                    if not space:
                        break
                    if not length.isdigit() or not 1 <= len(length) <= 9:
                        with self._lock:
                            self.bad_frames.append(buffer)
                        return
                    if len(rest) < int(length):
                        break
                    with self._lock:
                        self.raw.append(rest[:int(length)])
                    buffer = rest[int(length):]

    def messages(self) -> list[Message]:
        with self._lock:
            return [parse(raw) for raw in self.raw]

    def wait_for(self, predicate: Callable[[list[Message]], bool],
                 timeout_s: float = 30.0) -> list[Message]:
        """The messages once *predicate*(messages) is true; AssertionError when it stays false."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.messages()
            if predicate(found):
                return found
            time.sleep(0.05)
        raise AssertionError(f"syslog receiver: condition not met in {timeout_s:.0f}s; "
                             f"{len(self.raw)} messages")

    def close(self) -> None:
        self._closing.set()
        self._sock.close()
        for thread in self._threads:
            thread.join(5)
