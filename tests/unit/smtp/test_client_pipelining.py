"""`SmtpConnection` against a scripted SMTP server on 127.0.0.1: pipelining (RFC 2920) when
the server offers it, one command at a time when it does not, and every refusal on the
way handled as the one-at-a-time exchange handles it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.client import DeliveryError, Reply, SmtpConnection, TlsPolicy

BODY = b"Subject: hi\r\n\r\n.a line with a dot\r\nbye\r\n"
STUFFED = b"Subject: hi\r\n\r\n..a line with a dot\r\nbye\r\n.\r\n"
Answer = str | Callable[[str], str]


@dataclass
class Scripted:
    """A server that answers from *answers* (by verb; `END` is the reply after the data).

    With *hold*, replies to MAIL, RCPT and XCPQ wait until DATA has arrived: only a
    client that pipelines gets any. *close_after* names a verb after whose reply the
    server hangs up. Each `batches` item is the commands one read returned."""

    pipelining: bool = True
    hold: bool = False
    answers: dict[str, Answer] = field(default_factory=dict)
    close_after: str = ""
    silent: str = ""  # a verb never answered
    commands: list[str] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def answer(self, verb: str, line: str) -> str:
        defaults = {"MAIL": "250 2.1.0 Ok", "RCPT": "250 2.1.5 Ok", "XCPQ": "250 ok",
                    "DATA": "354 go ahead", "END": "250 2.0.0 queued", "RSET": "250 Ok",
                    "QUIT": "221 Bye", "NOOP": "250 Ok"}
        found = self.answers.get(verb, defaults.get(verb, "500 what"))
        return found(line) if callable(found) else found

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        held: list[str] = []
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                batch = [line.decode().rstrip("\r\n")]
                while b"\n" in reader._buffer:  # what the same read brought along
                    batch.append((await reader.readline()).decode().rstrip("\r\n"))
                self.batches.append(batch)
                for command in batch:
                    self.commands.append(command)
                    verb = command.split(" ", 1)[0].split(":", 1)[0].upper()
                    if verb == self.silent:
                        await asyncio.sleep(3600)
                    if verb == "EHLO":
                        keywords = ["250-scripted", "250-8BITMIME"]
                        keywords += ["250-PIPELINING"] if self.pipelining else []
                        writer.write(("\r\n".join(keywords) + "\r\n250 SIZE 1000000\r\n")
                                     .encode())
                        continue
                    reply = self.answer(verb, command)
                    if self.hold and verb in ("MAIL", "RCPT", "XCPQ"):
                        held.append(reply)
                        continue
                    writer.write("".join(r + "\r\n" for r in [*held, reply]).encode())
                    held = []
                    if verb == self.close_after:
                        await writer.drain()
                        return
                    if verb == "DATA" and reply.startswith("354"):
                        self.bodies.append(await reader.readuntil(b"\r\n.\r\n"))
                        writer.write((self.answer("END", "") + "\r\n").encode())
                    if verb == "QUIT":
                        return
                await writer.drain()
        finally:
            writer.close()


@dataclass
class Client:
    conn: SmtpConnection
    log: MailLog

    def text(self) -> str:
        self.log.flush()
        return self.log.path.read_text()

    async def send(self, rcpts: list[tuple[int, str]] | None = None,
                   extra: list[str] | None = None, sender: str = "a@example.org",
                   body: bytes = BODY) -> dict[int, Reply]:
        return await self.conn.send(mid=7, sender=sender,
                                    recipients=rcpts or [(0, "b@example.com")],
                                    body=body, extra=extra or [])


Scenario = Callable[[Scripted, Client], Awaitable[None]]


def run(tmp_path: Path, server: Scripted, scenario: Scenario, *, timeout_s: float = 10) -> None:
    async def main() -> None:
        listening = await asyncio.start_server(server.session, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        log = MailLog(tmp_path / "logs", appliance="test", serial="T")
        conn = SmtpConnection(maillog=log, ids=IdAllocator(tmp_path / "ids.json"),
                              local_hostname="client.example", label="scripted",
                              tls=TlsPolicy(), timeout_s=timeout_s)
        try:
            await conn.open("127.0.0.1", port)
            await scenario(server, Client(conn, log))
        finally:
            await conn.close()
            listening.close()
            log.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def transaction(server: Scripted) -> list[str]:
    """The commands of the first transaction (after EHLO)."""
    return [c for c in server.commands if not c.startswith(("EHLO", "QUIT"))]


def test_the_envelope_extra_lines_and_data_go_out_together(tmp_path: Path) -> None:
    """A server that answers nothing before DATA arrives: only a pipelining client gets
    its transaction through, in two round trips."""
    server = Scripted(hold=True)

    async def scenario(s: Scripted, c: Client) -> None:
        replies = await c.send([(0, "b@example.com"), (1, "c@example.com")],
                               extra=["XCPQ META one", "XCPQ META two"])
        assert replies == {0: Reply(250, "2.0.0 queued"), 1: Reply(250, "2.0.0 queued")}
        assert await c.send() == {0: Reply(250, "2.0.0 queued")}  # and a next one

    run(tmp_path, server, scenario, timeout_s=5)
    assert transaction(server)[:6] == [
        "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.com>", "RCPT TO:<c@example.com>",
        "XCPQ META one", "XCPQ META two", "DATA"]
    assert server.bodies == [STUFFED, STUFFED]


def test_one_command_at_a_time_without_pipelining(tmp_path: Path) -> None:
    server = Scripted(pipelining=False)

    async def scenario(s: Scripted, c: Client) -> None:
        replies = await c.send([(0, "b@example.com"), (1, "c@example.com")],
                               extra=["XCPQ META one"])
        assert replies == {0: Reply(250, "2.0.0 queued"), 1: Reply(250, "2.0.0 queued")}

    run(tmp_path, server, scenario)
    assert all(len(batch) == 1 for batch in server.batches), server.batches
    assert transaction(server) == ["MAIL FROM:<a@example.org>", "RCPT TO:<b@example.com>",
                                   "RCPT TO:<c@example.com>", "XCPQ META one", "DATA"]
    assert server.bodies == [STUFFED]


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_refused_sender_answers_for_every_recipient(tmp_path: Path, pipelining: bool) -> None:
    server = Scripted(pipelining=pipelining, answers={
        "MAIL": "550 5.7.1 sender refused", "RCPT": "503 need MAIL", "DATA": "503 need RCPT"})

    async def scenario(s: Scripted, c: Client) -> None:
        replies = await c.send([(0, "b@example.com"), (1, "c@example.com")])
        assert replies == {0: Reply(550, "5.7.1 sender refused"),
                           1: Reply(550, "5.7.1 sender refused")}
        assert "RSET" in s.commands
        s.answers.clear()
        assert (await c.send())[0].code == 250  # the connection is clean for the next

    run(tmp_path, server, scenario)
    assert server.bodies == [STUFFED]


@pytest.mark.parametrize("pipelining", [True, False])
def test_every_recipient_refused_sends_no_body(tmp_path: Path, pipelining: bool) -> None:
    server = Scripted(pipelining=pipelining, answers={
        "RCPT": lambda line: f"550 5.1.1 no such user {line[9:-1]}",
        "DATA": "554 5.5.1 no valid recipients"})

    async def scenario(s: Scripted, c: Client) -> None:
        replies = await c.send([(0, "b@example.com"), (1, "c@example.com")])
        assert replies == {0: Reply(550, "5.1.1 no such user b@example.com"),
                           1: Reply(550, "5.1.1 no such user c@example.com")}
        assert s.commands[-1] == "RSET" and s.bodies == []

    run(tmp_path, server, scenario)
    assert "DATA" in server.commands if pipelining else "DATA" not in server.commands


@pytest.mark.parametrize("pipelining", [True, False])
def test_some_recipients_refused_keep_their_reply(tmp_path: Path, pipelining: bool) -> None:
    server = Scripted(pipelining=pipelining, answers={
        "RCPT": lambda line: "450 4.2.1 busy" if "c@" in line else "250 Ok"})

    async def scenario(s: Scripted, c: Client) -> None:
        replies = await c.send([(0, "b@example.com"), (1, "c@example.com"),
                                (2, "d@example.com")])
        assert replies == {0: Reply(250, "2.0.0 queued"), 1: Reply(450, "4.2.1 busy"),
                           2: Reply(250, "2.0.0 queued")}
        assert c.text().count("Message done") == 1
        assert re.search(r"Message done DCID \d+ MID 7 to RID \[0, 2\]$", c.text(), re.M)

    run(tmp_path, server, scenario)


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_refused_extra_line_answers_for_every_recipient(tmp_path: Path,
                                                          pipelining: bool) -> None:
    server = Scripted(pipelining=pipelining, answers={
        "XCPQ": lambda line: "554 5.6.0 bad chunk" if line.endswith("two") else "250 ok",
        "DATA": "554 5.6.0 metadata refused"})

    async def scenario(s: Scripted, c: Client) -> None:
        replies = await c.send([(0, "b@example.com"), (1, "c@example.com")],
                               extra=["XCPQ META one", "XCPQ META two", "XCPQ META three"])
        assert replies == {0: Reply(554, "5.6.0 bad chunk"), 1: Reply(554, "5.6.0 bad chunk")}
        assert s.commands[-1] == "RSET" and s.bodies == []
        s.answers.clear()
        assert (await c.send())[0].code == 250

    run(tmp_path, server, scenario)


def test_a_refused_extra_line_whose_data_the_server_took_closes(tmp_path: Path) -> None:
    """The server said 354 to a DATA the client must not follow with a body: hanging up
    is the only way out without delivering a message; the next message finds it closed."""
    server = Scripted(answers={"XCPQ": "554 5.6.0 bad chunk"})

    async def scenario(s: Scripted, c: Client) -> None:
        assert await c.send(extra=["XCPQ META x"]) == {0: Reply(554, "5.6.0 bad chunk")}
        with pytest.raises(DeliveryError, match="connection lost during delivery: closed "
                           "after a refused transaction"):
            await c.send()
        await asyncio.sleep(0.1)
        assert s.bodies == []

    run(tmp_path, server, scenario)


@pytest.mark.parametrize("pipelining", [True, False])
def test_data_refused_answers_the_accepted_recipients(tmp_path: Path, pipelining: bool) -> None:
    server = Scripted(pipelining=pipelining, answers={
        "RCPT": lambda line: "550 5.1.1 unknown" if "c@" in line else "250 Ok",
        "DATA": "452 4.3.1 out of space"})

    async def scenario(s: Scripted, c: Client) -> None:
        replies = await c.send([(0, "b@example.com"), (1, "c@example.com")])
        assert replies == {0: Reply(452, "4.3.1 out of space"), 1: Reply(550, "5.1.1 unknown")}
        assert s.commands[-1] == "RSET" and s.bodies == []
        assert "Message done" not in c.text()

    run(tmp_path, server, scenario)


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_refused_message_resets(tmp_path: Path, pipelining: bool) -> None:
    server = Scripted(pipelining=pipelining, answers={"END": "554 5.7.1 spam"})

    async def scenario(s: Scripted, c: Client) -> None:
        assert await c.send() == {0: Reply(554, "5.7.1 spam")}
        assert s.commands[-1] == "RSET" and s.bodies == [STUFFED]

    run(tmp_path, server, scenario)


def test_a_refusal_then_hang_up_keeps_the_refusal(tmp_path: Path) -> None:
    server = Scripted(answers={"MAIL": "421 4.3.2 going down"}, close_after="MAIL")

    async def scenario(s: Scripted, c: Client) -> None:
        replies = await c.send([(0, "b@example.com"), (1, "c@example.com")])
        assert replies == {0: Reply(421, "4.3.2 going down"), 1: Reply(421, "4.3.2 going down")}
        with pytest.raises(DeliveryError, match="connection lost during delivery"):
            await c.send()

    run(tmp_path, server, scenario)


@pytest.mark.parametrize("verb", ["RCPT", "XCPQ", "DATA"])
def test_a_hang_up_before_the_final_reply_is_a_delivery_error(tmp_path: Path,
                                                              verb: str) -> None:
    server = Scripted(close_after=verb)

    async def scenario(s: Scripted, c: Client) -> None:
        with pytest.raises(DeliveryError, match="connection lost during delivery: the server "
                           "closed the connection") as caught:
            await c.send(extra=["XCPQ META x"])
        assert caught.value.temporary

    run(tmp_path, server, scenario)


def test_a_silent_server_times_out(tmp_path: Path) -> None:
    server = Scripted(silent="XCPQ")

    async def scenario(s: Scripted, c: Client) -> None:
        with pytest.raises(DeliveryError, match=r"no reply from the server within 0\.5s"):
            await c.send(extra=["XCPQ META x"])

    run(tmp_path, server, scenario, timeout_s=0.5)


def test_a_malformed_reply_is_a_delivery_error_naming_it(tmp_path: Path) -> None:
    server = Scripted(answers={"RCPT": "2x0 what\x1b[31m"})

    async def scenario(s: Scripted, c: Client) -> None:
        with pytest.raises(DeliveryError, match=r"malformed reply from the server: "
                           r"'2x0 what\\x1b\[31m\\r\\n'"):
            await c.send()

    run(tmp_path, server, scenario)


def test_multi_line_replies_are_read_whole_and_in_order(tmp_path: Path) -> None:
    server = Scripted(answers={"RCPT": lambda line: "250-first\r\n250-second\r\n250 third"
                               if "b@" in line else "550-no\r\n550 really"})

    async def scenario(s: Scripted, c: Client) -> None:
        replies = await c.send([(0, "b@example.com"), (1, "c@example.com")])
        assert replies == {0: Reply(250, "2.0.0 queued"), 1: Reply(550, "no\nreally")}

    run(tmp_path, server, scenario)


@pytest.mark.parametrize("pipelining", [True, False])
def test_an_address_that_cannot_go_on_a_command_line_is_refused_here(
        tmp_path: Path, pipelining: bool) -> None:
    """Nothing of it is sent: a space, an angle bracket or a line end would let it smuggle
    parameters or commands; a quoted local part may hold spaces."""
    server = Scripted(pipelining=pipelining)

    async def scenario(s: Scripted, c: Client) -> None:
        replies = await c.send([(0, "b@example.com> NOTIFY=NEVER"), (1, "x@y\r\nRSET"),
                                (2, '"c d"@example.com'), (3, "é@example.com")])
        assert {rid: r.code for rid, r in replies.items()} == {0: 553, 1: 553, 2: 250, 3: 553}
        assert "5.1.3" in replies[0].text
        sent = await c.send([(0, "b@example.com")], sender="bad sender@example.org")
        assert sent[0].code == 553 and "5.1.7" in sent[0].text

    run(tmp_path, server, scenario)
    assert [c for c in transaction(server) if c.startswith("RCPT")] == [
        'RCPT TO:<"c d"@example.com>']
    assert not any("NOTIFY" in c or c == "RSET" or "bad sender" in c for c in server.commands)


def test_the_null_sender(tmp_path: Path) -> None:
    server = Scripted()

    async def scenario(s: Scripted, c: Client) -> None:
        assert (await c.send(sender=""))[0].code == 250

    run(tmp_path, server, scenario)
    assert transaction(server)[0] == "MAIL FROM:<>"


def test_the_log_lines_of_a_pipelined_transaction(tmp_path: Path) -> None:
    server = Scripted()

    async def scenario(s: Scripted, c: Client) -> None:
        await c.conn.send(mid=9, sender="a@example.org", recipients=[(3, "b@example.com")],
                          body=BODY, start_note="to somewhere", done_note="(somewhere)")
        shown = [re.sub(r"^.*? Info: ", "", line) for line in c.text().splitlines()
                 if "DCID" in line or "Response" in line]
        assert [re.sub(r"(DCID|port) \d+", r"\1 n", line) for line in shown] == [
            "New SMTP DCID n interface 127.0.0.1 address 127.0.0.1 port n",
            "Delivery start DCID n MID 9 to RID [3] to somewhere",
            "MID 9 RID [3] Response '2.0.0 queued'",
            "Message done DCID n MID 9 to RID [3] (somewhere)"]

    run(tmp_path, server, scenario)


def test_a_refused_greeting_is_a_connection_error(tmp_path: Path) -> None:
    async def main() -> None:
        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"554 5.7.1 go away\r\n")
            await writer.drain()
            writer.close()
        listening = await asyncio.start_server(refuse, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        log = MailLog(tmp_path / "logs", appliance="test", serial="T")
        conn = SmtpConnection(maillog=log, ids=IdAllocator(tmp_path / "ids.json"),
                              local_hostname="client.example", label="scripted",
                              tls=TlsPolicy(), timeout_s=5)
        with pytest.raises(DeliveryError, match=f"connection to 127.0.0.1:{port} failed: "
                           "554 5.7.1 go away"):
            await conn.open("127.0.0.1", port)
        listening.close()
        log.flush()
        assert re.search(r"Connection error: DCID \d+ domain: scripted IP: 127.0.0.1 port: "
                         rf"{port} details: 554 5.7.1 go away interface: default",
                         log.path.read_text())
        log.close()

    asyncio.run(asyncio.wait_for(main(), 30))
