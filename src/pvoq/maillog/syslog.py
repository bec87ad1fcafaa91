"""Pushing log lines to a syslog server: RFC 5424 messages over TCP or UDP.

Each line becomes one message::

    <22>1 2026-11-30T15:10:45.123456Z gw1.example.com pvoq 4242 mail_logs - Info: Start MID 7 ICID 3

PRI is the facility (`mail` by default) times 8 plus the severity of the
line's AsyncOS level (Critical 2, Warning 4, Info 6, Debug 7); APP-NAME is
`pvoq`, PROCID the process ID, MSGID the log's name, no structured data
(`-`). The message is the line without its time stamp (the header carries
the time, in UTC); non-ASCII text is UTF-8 with a BOM. Over TCP, messages are
framed by octet counting (RFC 6587: `<length> <message>`); over UDP, one
message per datagram, cut at `UDP_MAX` bytes (RFC 5426).

The push never stalls mail: `SyslogSender.submit` only appends to a bounded
buffer, and a thread of its own does the network. When the buffer is full
(the server is slow or down) new lines are dropped and counted; the count is
reported through *warn* at most once per `DROP_REPORT_S`. A lost TCP
connection is retried with a growing delay (`BACKOFF_MIN_S` to
`BACKOFF_MAX_S`), the waiting lines kept. The log file stays the record:
syslog gets a copy.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable

from pvoq.maillog.settings import FACILITIES, SEVERITY, SyslogTarget

APP_NAME = "pvoq"
UDP_MAX = 2048
TCP_MAX = 65536
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 30.0
DROP_REPORT_S = 60.0
CONNECT_TIMEOUT_S = 5.0
SEND_TIMEOUT_S = 10.0
BOM = b"\xef\xbb\xbf"


def _token(text: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most *limit* characters, or `-`."""
    clean = "".join(c if "!" <= c <= "~" else "_" for c in text)[:limit]
    return clean or "-"


def rfc5424(text: str, *, level: str, facility: str, hostname: str, msgid: str,
            epoch: float | None = None, procid: int | None = None,
            max_bytes: int = TCP_MAX) -> bytes:
    """One RFC 5424 message (without framing) carrying *text* logged at *level*."""
    when = time.time() if epoch is None else epoch
    micro = int(round(when * 1_000_000))
    seconds, fraction = divmod(micro, 1_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:06d}Z"
    pri = FACILITIES[facility] * 8 + SEVERITY[level]
    header = (f"<{pri}>1 {stamp} {_token(hostname, 255)} {APP_NAME} "
              f"{os.getpid() if procid is None else procid} {_token(msgid, 32)} - ").encode()
    body = f"{level}: {text}"
    payload = body.encode("utf-8", "backslashreplace")
    if not body.isascii():
        payload = BOM + payload
    room = max_bytes - len(header)
    if len(payload) > room:
        payload = payload[:room].decode("utf-8", "ignore").encode("utf-8")
    return header + payload


def octet_counted(message: bytes) -> bytes:
    """*message* framed for TCP by octet counting (RFC 6587 3.4.1)."""
    return str(len(message)).encode() + b" " + message


class SyslogSender:
    """Sends lines to one syslog server from a thread of its own (see module doc).

    `submit` never blocks on the network; `close` stops the thread, giving it
    up to *drain_s* to send what waits.
    """

    def __init__(self, target: SyslogTarget, *, hostname: str, msgid: str,
                 warn: Callable[[str], None] | None = None) -> None:
        self.target = target
        self.hostname = hostname
        self.msgid = msgid
        self._warn = warn
        self._buffer: collections.deque[tuple[float, str, str]] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._drain_deadline = 0.0
        self.dropped = 0          # lines dropped since start (buffer full)
        self.sent = 0             # messages handed to the network
        self.connected = False
        self.last_error: str | None = None
        self._unreported = 0
        self._last_report = 0.0
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, name=f"syslog {target.describe()}",
                                        daemon=True)
        self._thread.start()

    def submit(self, text: str, level: str, epoch: float | None = None) -> None:
        """Queue one line for the server; drop it (counted) when the buffer is full."""
        with self._cond:
            if self._closing:
                return
            if len(self._buffer) >= self.target.buffer_lines:
                self.dropped += 1
                self._unreported += 1
                return
            self._buffer.append((time.time() if epoch is None else epoch, level, text))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._buffer)

    def close(self, drain_s: float = 1.0) -> None:
        with self._cond:
            self._closing = True
            self._drain_deadline = time.monotonic() + drain_s
            self._cond.notify()
        self._thread.join(timeout=drain_s + CONNECT_TIMEOUT_S + 1.0)

    # -- the sending thread ---------------------------------------------------
    def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            with self._cond:
                while not self._buffer and not self._closing:
                    self._cond.wait(timeout=DROP_REPORT_S)
                    self._report_drops()
                if self._closing and (not self._buffer
                                      or time.monotonic() >= self._drain_deadline):
                    break
                item = self._buffer[0]
            message = self._encode(item)
            try:
                self._send(message)
            except OSError as exc:
                self._disconnect(f"{type(exc).__name__}: {exc}")
                if self._wait(backoff):
                    break
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            backoff = BACKOFF_MIN_S
            with self._cond:
                if self._buffer and self._buffer[0] is item:
                    self._buffer.popleft()
                self.sent += 1
                self._report_drops()
        self._disconnect(None)

    def _wait(self, seconds: float) -> bool:
        """Sleep *seconds* (a retry delay); True when closing and the drain time is over."""
        with self._cond:
            deadline = time.monotonic() + seconds
            while not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(timeout=left)
            self._report_drops()  # a long outage: the drops are reported while it lasts
            return self._closing and time.monotonic() >= self._drain_deadline

    def _encode(self, item: tuple[float, str, str]) -> bytes:
        epoch, level, text = item
        limit = UDP_MAX if self.target.protocol == "udp" else TCP_MAX
        message = rfc5424(text, level=level, facility=self.target.facility,
                          hostname=self.hostname, msgid=self.msgid, epoch=epoch,
                          max_bytes=limit)
        return message if self.target.protocol == "udp" else octet_counted(message)

    def _connect(self) -> socket.socket:
        family_hint = socket.SOCK_DGRAM if self.target.protocol == "udp" else socket.SOCK_STREAM
        infos = socket.getaddrinfo(self.target.host, self.target.port, type=family_hint)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            if kind == socket.SOCK_STREAM:
                sock.settimeout(CONNECT_TIMEOUT_S)
                sock.connect(address)
                sock.settimeout(SEND_TIMEOUT_S)
            else:
                sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock

    def _send(self, message: bytes) -> None:
        if self._sock is None:
            self._sock = self._connect()
            if not self.connected:
                self.connected = True
                if self.last_error is not None:
                    self._say(f"Syslog push to {self.target.describe()} resumed")
                self.last_error = None
        if self.target.protocol == "udp":
            try:
                self._sock.send(message)
            except ConnectionRefusedError:
                # nothing listens (an ICMP error of an earlier datagram): this one is lost
                # like any UDP datagram; try again with the next line
                self._sock.close()
                self._sock = None
        else:
            self._sock.sendall(message)

    def _disconnect(self, why: str | None) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.connected = False
        if why is not None and self.last_error is None:
            self._say(f"Syslog push to {self.target.describe()} failed: {why}; retrying")
        if why is not None:
            self.last_error = why

    def _report_drops(self) -> None:
        """Called with the lock held: report the drops since the last report, once a while."""
        now = time.monotonic()
        if self._unreported and now - self._last_report >= DROP_REPORT_S:
            count, self._unreported, self._last_report = self._unreported, 0, now
            message = (f"Syslog push to {self.target.describe()}: {count} lines dropped "
                       f"(buffer of {self.target.buffer_lines} lines full; "
                       f"{self.dropped} since start)")
            threading.Thread(target=self._say, args=(message,), daemon=True).start()

    def _say(self, message: str) -> None:
        if self._warn is not None:
            with contextlib.suppress(ValueError):  # the log was closed meanwhile
                self._warn(message)
