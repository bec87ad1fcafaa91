"""A session's setup: its command table is made once per session class, not per session.

A public listener makes a session for every connection; wrapping each of its
`smtp_*` methods under the session limits for every connection was a few
percent of a busy listener's CPU. Here: two sessions share the wrapped
functions, each bound to its own session, with aiosmtpd's syntax marks kept
(HELP and EHLO read them), and the limits still apply through them.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import Listener
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.server import BaseHandler, PvoqSMTP, ServerContext

ACCEPT_ALL = "$ACCEPTED\n  ACCEPT {}\nALL\n  $ACCEPTED (everyone)\n"


def _sessions(tmp_path: Path, count: int) -> list[PvoqSMTP]:
    maillog = MailLog(tmp_path / "logs", appliance="gateway gw.example.test", serial="SN")
    context = ServerContext(maillog, IdAllocator(tmp_path / "ids.json"), "gw.example.test")
    listener = Listener(name="IncomingMail", protocol="SMTP", interface_name="Incoming Mail",
                        port=0, listen_queue_size=50, type="public", hat=parse_hat(ACCEPT_ALL),
                        rat=make_rat([("ALL", "ACCEPT", 0)]))

    async def make() -> list[PvoqSMTP]:
        return [PvoqSMTP(BaseHandler(context), listener=listener, interface_ip="127.0.0.1",
                         context=context) for _ in range(count)]

    return asyncio.run(make())


def test_two_sessions_share_their_wrapped_commands_each_bound_to_itself(tmp_path: Path) -> None:
    first, second = _sessions(tmp_path, 2)
    commands = {name[len("smtp_"):] for name, _ in inspect.getmembers(PvoqSMTP)
                if name.startswith("smtp_")}
    assert set(first._smtp_methods) == set(second._smtp_methods) == commands
    for name in commands:
        one, two = first._smtp_methods[name], second._smtp_methods[name]
        assert one.__func__ is two.__func__
        assert one.__self__ is first and two.__self__ is second
    # aiosmtpd's syntax marks, which HELP and EHLO read, come through the wrapper.
    assert first._smtp_methods["MAIL"].__smtp_syntax__ == "MAIL FROM: <address>"


def test_the_shared_commands_count_junk_per_session(tmp_path: Path) -> None:
    """NOOPs on one session are that session's junk, not the other's."""
    first, second = _sessions(tmp_path, 2)

    async def noops() -> None:
        for _ in range(3):
            await first._smtp_methods["NOOP"]("")

    pushed: list[str] = []

    async def push(line: str) -> None:
        pushed.append(line)

    first.push = push  # type: ignore[method-assign]
    asyncio.run(noops())
    assert first._junk == 3 and second._junk == 0
    assert pushed == ["250 OK"] * 3
