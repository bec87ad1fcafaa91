"""Tests for pvoq.maillog.syslog: RFC 5424 messages, octet-counted TCP and UDP to a real
receiver on 127.0.0.1, reconnecting, and the bounded buffer."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvoq.maillog.settings import LogSettings, SyslogTarget
from pvoq.maillog.syslog import UDP_MAX, SyslogSender, octet_counted, rfc5424
from pvoq.maillog.writer import MailLog
from pvoq.testing.localdeploy import free_port
from pvoq.testing.syslogd import BOM, Message, SyslogReceiver, parse

EPOCH = calendar.timegm((2026, 11, 30, 15, 10, 45, 0, 0, 0)) + 0.25


class TestFormat:
    def test_fields(self) -> None:
        raw = rfc5424("Start MID 7 ICID 3", level="Info", facility="mail",
                      hostname="gw1.example.com", msgid="mail_logs", epoch=EPOCH, procid=42)
        assert raw == (b"<22>1 2026-11-30T15:10:45.250000Z gw1.example.com pvoq 42 mail_logs - "
                       b"Info: Start MID 7 ICID 3")
        message = parse(raw)
        assert (message.facility, message.severity) == (2, 6)
        assert message.structured_data == "-" and message.text == "Info: Start MID 7 ICID 3"

    @pytest.mark.parametrize(("level", "severity"), [("Critical", 2), ("Warning", 4),
                                                     ("Info", 6), ("Debug", 7)])
    def test_severity_of_each_level(self, level: str, severity: int) -> None:
        message = parse(rfc5424("x", level=level, facility="local3", hostname="h", msgid="m"))
        assert (message.facility, message.severity) == (19, severity)

    def test_non_ascii_is_utf8_with_a_bom(self) -> None:
        raw = rfc5424('MID 1 Subject "Grüße"', level="Info", facility="mail", hostname="h",
                      msgid="mail_logs")
        assert BOM in raw
        assert parse(raw).text == 'Info: MID 1 Subject "Grüße"'

    def test_hostile_header_fields_stay_tokens(self) -> None:
        """A space or a control character in the hostname cannot shift the fields."""
        raw = rfc5424("x", level="Info", facility="mail", hostname="a b\x1bc", msgid="")
        message = parse(raw)
        assert message.hostname == "a_b_c" and message.msgid == "-"

    def test_long_message_is_cut_to_the_limit_on_a_character(self) -> None:
        raw = rfc5424("é" * 3000, level="Info", facility="mail", hostname="h", msgid="m",
                      max_bytes=UDP_MAX)
        assert len(raw) <= UDP_MAX
        assert parse(raw).text.startswith("Info: éé")

    def test_octet_counting(self) -> None:
        assert octet_counted(b"<22>1 x") == b"7 <22>1 x"


@pytest.fixture
def senders() -> Iterator[list[SyslogSender]]:
    made: list[SyslogSender] = []
    yield made
    for sender in made:
        sender.close(drain_s=0)


def texts(messages: list[Message]) -> list[str]:
    return [m.text for m in messages]


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_lines_reach_a_real_receiver(protocol: str, senders: list[SyslogSender]) -> None:
    receiver = SyslogReceiver(protocol)
    try:
        sender = SyslogSender(SyslogTarget("127.0.0.1", receiver.port, protocol),
                              hostname="gw1.example.com", msgid="mail_logs")
        senders.append(sender)
        for n in range(50):
            sender.submit(f"line {n}", "Info")
        found = receiver.wait_for(lambda m: len(m) >= 50)
        assert texts(found) == [f"Info: line {n}" for n in range(50)]
        assert {(m.app_name, m.msgid, m.hostname) for m in found} == {
            ("pvoq", "mail_logs", "gw1.example.com")}
        assert receiver.bad_frames == []
    finally:
        receiver.close()


def test_tcp_receiver_down_then_up(senders: list[SyslogSender]) -> None:
    """Lines logged while the server is down wait (bounded) and go once it is up."""
    port = free_port()
    warnings: list[str] = []
    sender = SyslogSender(SyslogTarget("127.0.0.1", port, "tcp"), hostname="h",
                          msgid="mail_logs", warn=warnings.append)
    senders.append(sender)
    for n in range(10):
        sender.submit(f"line {n}", "Info")
    deadline = time.monotonic() + 30
    while sender.last_error is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sender.last_error is not None and not sender.connected
    receiver = SyslogReceiver("tcp", port)
    try:
        found = receiver.wait_for(lambda m: len(m) >= 10, timeout_s=60)
        assert texts(found)[:10] == [f"Info: line {n}" for n in range(10)]
        assert any("failed" in w for w in warnings)
        deadline = time.monotonic() + 30
        while not any("resumed" in w for w in warnings) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any("resumed" in w for w in warnings)
    finally:
        receiver.close()


def test_tcp_receiver_restarted_gets_later_lines(senders: list[SyslogSender]) -> None:
    receiver = SyslogReceiver("tcp")
    port = receiver.port
    sender = SyslogSender(SyslogTarget("127.0.0.1", port, "tcp"), hostname="h",
                          msgid="mail_logs")
    senders.append(sender)
    sender.submit("before", "Info")
    receiver.wait_for(lambda m: len(m) >= 1)
    receiver.close()
    second = SyslogReceiver("tcp", port)
    try:
        deadline = time.monotonic() + 60
        n = 0
        while not second.raw and time.monotonic() < deadline:
            sender.submit(f"after {n}", "Info")  # the first writes find the old connection dead
            n += 1
            time.sleep(0.05)
        assert texts(second.messages())[0].startswith("Info: after ")
    finally:
        second.close()


def test_full_buffer_drops_and_counts(senders: list[SyslogSender]) -> None:
    """A dead server never blocks `submit`: beyond the buffer, lines are dropped and counted."""
    sender = SyslogSender(SyslogTarget("127.0.0.1", free_port(), "tcp", buffer_lines=5),
                          hostname="h", msgid="mail_logs")
    senders.append(sender)
    for n in range(25):
        sender.submit(f"line {n}", "Info")
    assert sender.dropped >= 20 - 1  # the sender may hold one it is trying
    assert sender.pending() <= 5


def test_maillog_pushes_what_it_writes(tmp_path: Path) -> None:
    """The writer sends its lines (not the file's header) with the configured facility."""
    receiver = SyslogReceiver("udp")
    log = MailLog(tmp_path, appliance="gateway gw1", serial="SN", hostname="gw1.example.com",
                  settings=LogSettings(syslog=SyslogTarget("127.0.0.1", receiver.port, "udp",
                                                           facility="local0")))
    try:
        log.info("Start MID 1 ICID 1")
        log.warning("something odd")
        found = receiver.wait_for(lambda m: len(m) >= 3)
        assert texts(found)[1:3] == ["Info: Start MID 1 ICID 1", "Warning: something odd"]
        assert texts(found)[0].startswith("Info: Logfile opened by gateway gw1")
        assert [(m.facility, m.severity) for m in found[1:3]] == [(16, 6), (16, 4)]
        log.configure(LogSettings(syslog=None))
        log.info("not pushed")
        log.flush()
        assert log.syslog_state() is None
    finally:
        log.close()
        receiver.close()


def test_udp_receiver_down_then_up(senders: list[SyslogSender]) -> None:
    """UDP: what is sent while nothing listens is lost (ICMP refusals do not stop the push);
    lines sent once the receiver is up arrive."""
    port = free_port()
    sender = SyslogSender(SyslogTarget("127.0.0.1", port, "udp"), hostname="h",
                          msgid="mail_logs")
    senders.append(sender)
    for n in range(20):
        sender.submit(f"down {n}", "Info")
    deadline = time.monotonic() + 30
    while sender.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sender.pending() == 0
    receiver = SyslogReceiver("udp", port)
    try:
        sender.submit("up", "Info")
        found = receiver.wait_for(lambda m: any(x.text == "Info: up" for x in m))
        assert all(not x.text.startswith("Info: down") for x in found)
    finally:
        receiver.close()
