"""RFC 5321 behaviour and hardening of a public listener, over real sockets."""

from __future__ import annotations

import smtplib
import socket

import pytest

from pvoq.smtp import replies
from pvoq.testing.localdeploy import Deployment, wait_for
from pvoq.testing.trace import relayed

LIMIT = 20_000


def _limit_listener(dep: Deployment, **settings: int) -> None:
    """Add per-listener settings to the gateway's public listener."""
    config = dep.gateway_config
    extra = "".join(f"    <{k}>{v}</{k}>\n" for k, v in settings.items())
    text = config.read_text()
    marker = "<listener_name>IncomingMail</listener_name>\n"
    assert marker in text
    config.write_text(text.replace(marker, marker + extra, 1))


class RawSmtp:
    """A bare socket client: bytes exactly as written, replies as read."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self.file.readline().decode()
            if not line:
                raise ConnectionError("closed")
            lines.append(line.strip())
            if line[3:4] != "-":
                return int(line[:3]), "\n".join(lines)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def hardened(deployment: Deployment) -> Deployment:
    _limit_listener(deployment, max_message_size=LIMIT, max_connections=2)
    deployment.start()
    return deployment


class TestPublicListener:
    def test_ehlo_announces_size_and_pipelining(self, hardened: Deployment) -> None:
        """EHLO lists SIZE with the configured limit and PIPELINING."""
        with smtplib.SMTP("127.0.0.1", hardened.ports["gateway_smtp"], timeout=10) as smtp:
            smtp.ehlo("client.example")
            assert smtp.has_extn("pipelining")
            assert smtp.esmtp_features["size"] == str(LIMIT)

    def test_oversize_is_refused_with_552(self, hardened: Deployment) -> None:
        """A SIZE parameter or a body over the limit is refused with 552, nothing queued."""
        with smtplib.SMTP("127.0.0.1", hardened.ports["gateway_smtp"], timeout=10) as smtp:
            smtp.ehlo("client.example")
            code, _ = smtp.docmd(f"MAIL FROM:<a@sender.example> SIZE={LIMIT + 1}")
            assert code == 552
            smtp.rset()
            assert smtp.mail("a@sender.example")[0] == 250
            assert smtp.rcpt("bob@example.com")[0] == 250
            code, text = smtp.data(b"Subject: big\r\n\r\n" + b"x" * 78 + b"\r\n" * 0 +
                                (b"y" * 70 + b"\r\n") * (LIMIT // 70 + 10))
            assert (code, text.decode()) == replies.TOO_MUCH_DATA
        marker = hardened.send(subject="small", body="after the big one")
        delivered = wait_for("the small message", hardened.delivered)
        assert [relayed(c) for _, c in delivered] == [marker]

    def test_smuggled_message_is_refused(self, hardened: Deployment) -> None:
        """A bare LF before the dot does not end DATA, and the message is refused whole."""
        raw = RawSmtp(hardened.ports["gateway_smtp"])
        try:
            assert raw.reply()[0] == 220
            raw.send(b"EHLO client.example\r\n")
            assert raw.reply()[0] == 250
            raw.send(b"MAIL FROM:<a@sender.example>\r\n")
            assert raw.reply()[0] == 250
            raw.send(b"RCPT TO:<bob@example.com>\r\n")
            assert raw.reply()[0] == 250
            raw.send(b"DATA\r\n")
            assert raw.reply() == (replies.START_DATA.code, str(replies.START_DATA))
            raw.send(b"Subject: first\r\n\r\nhello\n.\nMAIL FROM:<evil@attacker.example>\r\n"
                     b"RCPT TO:<bob@example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nboo\r\n"
                     b".\r\n")
            code, text = raw.reply()
            assert (code, text) == (replies.BARE_NEWLINE.code, str(replies.BARE_NEWLINE))
            raw.send(b"QUIT\r\n")
            assert raw.reply()[0] == 221
        finally:
            raw.close()
        marker = hardened.send(subject="clean", body="after the smuggling attempt")
        delivered = wait_for("the clean message", hardened.delivered)
        assert [relayed(c) for _, c in delivered] == [marker]

    def test_pipelined_commands_are_answered_in_order(self, hardened: Deployment) -> None:
        """MAIL, RCPT, RCPT and DATA sent in one write get their replies in order."""
        raw = RawSmtp(hardened.ports["gateway_smtp"])
        try:
            raw.reply()
            raw.send(b"EHLO client.example\r\n")
            raw.reply()
            raw.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<bob@example.com>\r\n"
                     b"RCPT TO:<eve@elsewhere.example>\r\nDATA\r\n")
            assert [raw.reply()[0] for _ in range(4)] == [250, 250, 550, 354]
            raw.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\n")
            assert raw.reply()[0] == 250
        finally:
            raw.close()

    def test_connections_over_the_limit_get_421(self, hardened: Deployment) -> None:
        """The third concurrent session on a listener limited to two is told to come back."""
        port = hardened.ports["gateway_smtp"]
        held = [RawSmtp(port), RawSmtp(port)]
        try:
            assert [c.reply()[0] for c in held] == [220, 220]
            extra = RawSmtp(port)
            try:
                assert extra.reply() == (replies.TOO_MANY_CONNECTIONS.code,
                                         str(replies.TOO_MANY_CONNECTIONS))
            finally:
                extra.close()
        finally:
            for c in held:
                c.close()

        def greeting() -> bool:
            client = RawSmtp(port)
            try:
                return client.reply()[0] == 220
            finally:
                client.close()

        assert wait_for("a free slot once the sessions closed", greeting)

    def test_command_line_too_long_gets_500(self, hardened: Deployment) -> None:
        """A command line over 512 octets is answered 500 and the session goes on."""
        with smtplib.SMTP("127.0.0.1", hardened.ports["gateway_smtp"], timeout=10) as smtp:
            smtp.ehlo("client.example")
            code, _ = smtp.docmd("MAIL FROM:<" + "a" * 600 + "@sender.example>")
            assert code == 500
            assert smtp.noop()[0] == 250
