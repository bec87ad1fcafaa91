"""Session limits over real sockets: one client cannot hold a connection slot for ever.

Junk commands, the session lifetime, a cpq_listener's STARTTLS deadline, the per-address
limit in the HAT `pvoq init` writes, and commands pipelined straight after DATA.
"""

from __future__ import annotations

import smtplib
import socket
import time
from pathlib import Path

from pvoq.config.model import DEFAULT_MAX_CONN_PER_IP
from pvoq.smtp import replies
from pvoq.testing.localdeploy import Deployment, wait_for

PUBLIC = "<listener_name>IncomingMail</listener_name>\n"
CPQ = "<listener_name>cpq_listener</listener_name>\n"
PATIENCE_S = 60.0  # the bound on any wait below: generous, the machines are loaded


def _set_listener(config: Path, marker: str, **settings: object) -> None:
    """Add per-listener elements after *marker* in *config*."""
    extra = "".join(f"    <{k}>{v}</{k}>\n" for k, v in settings.items())
    text = config.read_text()
    assert text.count(marker) == 1
    config.write_text(text.replace(marker, marker + extra))


class Raw:
    """A bare socket client: bytes as written, replies as read, the close seen."""

    def __init__(self, port: int, source: str | None = None) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=PATIENCE_S,
            source_address=(source, 0) if source else None)
        self.file = self.sock.makefile("rb")

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self.file.readline().decode()
            if not line:
                raise ConnectionError("closed")
            lines.append(line.strip())
            if line[3:4] != "-":
                return int(line[:3]), line[4:].strip()

    def command(self, line: str) -> tuple[int, str]:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True when the server has closed the connection (EOF, or a reset)."""
        try:
            return self.file.readline() == b""
        except OSError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def _log(dep: Deployment, role: str = "gateway") -> str:
    return "\n".join(dep.mail_logs(role))


def _logged(dep: Deployment, text: str, role: str = "gateway") -> bool:
    return bool(wait_for(f"{text!r} in mail_logs", lambda: text in _log(dep, role)))


def _start_gateway(dep: Deployment) -> None:
    dep.start_sink()
    dep.start_gateway()


def _transaction(client: Raw) -> None:
    assert client.command("MAIL FROM:<a@sender.example>")[0] == 250
    assert client.command("RCPT TO:<bob@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354


class TestJunkCommands:
    def test_a_noop_loop_is_cut_at_the_default_limit(self, deployment: Deployment) -> None:
        """With the defaults, the 101st NOOP gets 421 and the connection is closed."""
        _start_gateway(deployment)
        client = Raw(deployment.ports["gateway_smtp"])
        try:
            assert client.reply()[0] == 220
            assert client.command("EHLO junk.example")[0] == 250
            for _ in range(100):
                assert client.command("NOOP")[0] == 250
            assert client.command("NOOP") == replies.TOO_MANY_JUNK_COMMANDS
            assert client.closed()
        finally:
            client.close()
        assert _logged(deployment, "Receiving Failed: too many junk commands (101; "
                                   "max_junk_commands 100)")

    def test_rset_help_and_errors_count_and_a_message_starts_again(
            self, deployment: Deployment) -> None:
        """RSET, HELP and syntax errors count; an accepted message resets the count."""
        _set_listener(deployment.gateway_config, PUBLIC, max_junk_commands=4)
        _start_gateway(deployment)
        client = Raw(deployment.ports["gateway_smtp"])
        try:
            client.reply()
            assert client.command("EHLO junk.example")[0] == 250
            assert client.command("RSET")[0] == 250
            assert client.command("HELP")[0] == 250
            assert client.command("MAIL")[0] == 501  # erroneous: counts
            _transaction(client)
            assert client.command("Subject: counted\r\n\r\nbody\r\n.")[0] == 250
            for _ in range(4):  # the count started again with the message
                assert client.command("NOOP")[0] == 250
            assert client.command("RSET") == replies.TOO_MANY_JUNK_COMMANDS
            assert client.closed()
        finally:
            client.close()
        assert wait_for("the message delivered", deployment.delivered)


class TestSessionTime:
    def test_a_session_past_its_time_is_cut_between_commands(
            self, deployment: Deployment) -> None:
        """A NOOP every half second keeps the idle timer alive, not the session."""
        _set_listener(deployment.gateway_config, PUBLIC, max_session_seconds=2)
        _start_gateway(deployment)
        client = Raw(deployment.ports["gateway_smtp"])
        started = time.monotonic()
        try:
            client.reply()
            assert client.command("EHLO slow.example")[0] == 250
            answer = (250, "")
            while answer[0] == 250 and time.monotonic() - started < PATIENCE_S:
                time.sleep(0.5)
                try:
                    answer = client.command("NOOP")
                except (ConnectionError, OSError):
                    answer = (0, "closed without a reply")
            assert answer == replies.SESSION_TOO_LONG
            assert time.monotonic() - started >= 2
        finally:
            client.close()
        assert _logged(deployment, "Receiving Failed: session older than "
                                   "max_session_seconds 2")

    def test_a_message_under_way_finishes_first(self, deployment: Deployment) -> None:
        """The time runs out in the middle of DATA: the message is accepted, then 421."""
        _set_listener(deployment.gateway_config, PUBLIC, max_session_seconds=2)
        _start_gateway(deployment)
        client = Raw(deployment.ports["gateway_smtp"])
        try:
            client.reply()
            assert client.command("EHLO slow.example")[0] == 250
            _transaction(client)
            client.sock.sendall(b"Subject: slow\r\n\r\nfirst half\r\n")
            time.sleep(3)
            client.sock.sendall(b"second half\r\n.\r\n")
            code, text = client.reply()
            assert code == 250 and "accepted" in text
            assert client.reply() == replies.SESSION_TOO_LONG
            assert client.closed()
        finally:
            client.close()
        delivered = wait_for("the slow message delivered", deployment.delivered)
        assert b"second half" in delivered[0][1]


class TestCpqStarttlsDeadline:
    def test_a_client_that_never_starts_tls_is_cut(self, deployment: Deployment) -> None:
        """The manager's cpq_listener closes a client without TLS after the deadline; the
        gateway, which starts TLS at once, still ships what it catches."""
        _set_listener(deployment.manager_config, CPQ, starttls_deadline_seconds=2)
        deployment.start()
        client = Raw(deployment.ports["manager_cpq"])
        started = time.monotonic()
        try:
            assert client.reply()[0] == 220
            assert client.command("EHLO idle.example")[0] == 250
            answer = (250, "")
            while answer[0] == 250 and time.monotonic() - started < PATIENCE_S:
                time.sleep(0.5)
                try:
                    answer = client.command("NOOP")
                except (ConnectionError, OSError):
                    answer = (0, "closed without a reply")
            assert answer == replies.STARTTLS_TOO_LATE
        finally:
            client.close()
        assert _logged(deployment, "Receiving Failed: STARTTLS not completed within "
                                   "starttls_deadline_seconds 2", role="manager")
        deployment.send(subject="confidential figures", body="caught")
        assert wait_for("the message quarantined", deployment.quarantined, timeout_s=PATIENCE_S)


class TestPerAddressLimit:
    def test_a_legitimate_sender_gets_in_while_one_address_holds_its_maximum(
            self, deployment: Deployment) -> None:
        """The HAT `pvoq init` writes: one address gets its share, the next connection from
        it 421, and a sender from elsewhere still delivers."""
        _start_gateway(deployment)
        port = deployment.ports["gateway_smtp"]
        held: list[Raw] = []
        try:
            for _ in range(DEFAULT_MAX_CONN_PER_IP):
                client = Raw(port, source="127.0.0.1")
                held.append(client)
                assert client.reply()[0] == 220
            extra = Raw(port, source="127.0.0.1")
            held.append(extra)
            assert extra.reply() == replies.TOO_MANY_FROM_HOST
            with smtplib.SMTP("127.0.0.1", port, timeout=PATIENCE_S,
                              source_address=("127.0.0.2", 0)) as smtp:
                smtp.sendmail("legit@sender.example", ["bob@example.com"],
                              b"Subject: legit\r\n\r\nstill gets in\r\n")
        finally:
            for client in held:
                client.close()
        assert _logged(deployment, f"concurrent connections from 127.0.0.1 (policy $ACCEPTED "
                                   f"max_conn_per_ip {DEFAULT_MAX_CONN_PER_IP})")
        delivered = wait_for("the legitimate message", deployment.delivered)
        assert b"still gets in" in delivered[0][1]


class TestPipeliningAfterData:
    def _pipeline(self, deployment: Deployment) -> tuple[tuple[int, str], Raw]:
        client = Raw(deployment.ports["gateway_smtp"])
        client.reply()
        assert client.command("EHLO pipe.example")[0] == 250
        _transaction(client)
        client.sock.sendall(b"Subject: piped\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        return client.reply(), client

    def test_refused_on_a_public_listener_and_the_message_kept(
            self, deployment: Deployment) -> None:
        """The message gets its 250 and is delivered; the pipelined QUIT gets 554 and the
        connection is closed."""
        _start_gateway(deployment)
        (code, text), client = self._pipeline(deployment)
        try:
            assert code == 250 and "accepted" in text
            assert client.reply() == replies.PIPELINING_AFTER_DATA
            assert client.closed()
        finally:
            client.close()
        assert _logged(deployment, "Receiving Failed: improper command pipelining after DATA: "
                                   "b'QUIT\\r\\n'")
        delivered = wait_for("the piped message", deployment.delivered)
        assert b"Subject: piped" in delivered[0][1]

    def test_allowed_when_the_listener_says_so(self, deployment: Deployment) -> None:
        _set_listener(deployment.gateway_config, PUBLIC, reject_unauth_pipelining="false")
        _start_gateway(deployment)
        (code, _), client = self._pipeline(deployment)
        try:
            assert code == 250
            assert client.reply()[0] == 221
        finally:
            client.close()
        assert "improper command pipelining" not in _log(deployment)
        assert wait_for("the piped message", deployment.delivered)

