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
import logging
import ssl
from pathlib import Path

import aiosmtpd.smtp
import pytest
from aiosmtpd.smtp import SMTP

from pvoq.config.hat import make_rat, parse_hat
from pvoq.config.model import Listener
from pvoq.cpq.server import CpqHandler, CpqSMTP
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp import setup
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


def _same(ours: object, theirs: object, session: object, other: object) -> bool:
    """Whether an attribute of our set-up matches aiosmtpd's for the other session."""
    if inspect.ismethod(theirs):
        return (inspect.ismethod(ours) and ours.__func__ is theirs.__func__
                and (ours.__self__ is session) == (theirs.__self__ is other))
    if isinstance(theirs, dict) and theirs and all(inspect.ismethod(v) for v in theirs.values()):
        return set(ours) == set(theirs)  # type: ignore[call-overload]
    if type(theirs).__module__.startswith(("asyncio", "_asyncio")) or callable(theirs):
        return type(ours) is type(theirs)
    return ours == theirs


@pytest.mark.parametrize("cpq", [False, True])
def test_a_session_gets_what_aiosmtpds_own_setup_gives(tmp_path: Path, cpq: bool) -> None:
    """The lookups are made once per listener, but each session ends up with the same
    attributes aiosmtpd's `SMTP.__init__` gives it (so a new aiosmtpd that adds one
    fails here, not in production)."""
    maillog = MailLog(tmp_path / "logs", appliance="gateway gw.example.test", serial="SN")
    context = ServerContext(maillog, IdAllocator(tmp_path / "ids.json"), "gw.example.test")
    listener = Listener(name="IncomingMail", protocol="SMTP", interface_name="Incoming Mail",
                        port=0, listen_queue_size=50, type="public", hat=parse_hat(ACCEPT_ALL),
                        rat=make_rat([("ALL", "ACCEPT", 0)]))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER) if cpq else None
    cls = CpqSMTP if cpq else PvoqSMTP
    handler = CpqHandler(context) if cpq else BaseHandler(context)

    async def both() -> tuple[PvoqSMTP, PvoqSMTP]:
        ours = cls(handler, listener=listener, interface_ip="127.0.0.1", context=context,
                   tls_context=tls)
        theirs = cls.__new__(cls)
        SMTP.__init__(theirs, handler, hostname=context.hostname, ident="pvoq ESMTP",
                      data_size_limit=listener.max_message_size,
                      timeout=listener.timeout_seconds, tls_context=tls,
                      require_starttls=cpq)
        return ours, theirs

    ours, theirs = asyncio.run(both())
    assert "_auth_methods" not in vars(ours)  # made when first read (AUTH, EHLO after TLS)
    assert ours._auth_methods is ours._auth_methods
    expected = vars(theirs)
    got = vars(ours)
    assert set(expected) <= set(got)
    differ = [name for name, value in expected.items()
              if name not in ("_smtp_methods", "_auth_methods", "_handle_hooks")
              and not _same(got[name], value, ours, theirs)]
    assert differ == []
    assert bool(ours.require_starttls) is bool(theirs.require_starttls) is cpq
    assert ours._handle_hooks == theirs._handle_hooks  # bound methods of the same handler
    assert {k: (v.method.__func__, v.is_builtin) for k, v in ours._auth_methods.items()} == {
        k: (v.method.__func__, v.is_builtin) for k, v in theirs._auth_methods.items()}
    assert all(v.method.__self__ is ours for v in ours._auth_methods.values() if v.is_builtin)
    # The command table: the same commands, each the limits' wrapper of aiosmtpd's method.
    # (aiosmtpd's own finds none: `HookNames` keeps them out of a session's `dir()`.)
    commands = {n[len("smtp_"):]: getattr(cls, n) for n in dir(cls) if n.startswith("smtp_")}
    assert set(ours._smtp_methods) == set(commands)
    for name, method in commands.items():
        assert ours._smtp_methods[name].__wrapped__ is method
        assert ours._smtp_methods[name].__self__ is ours
    assert ours._smtp_methods.get("NOSUCH") is None and "MAIL" in ours._smtp_methods


def test_a_handler_that_cannot_be_a_cache_key_still_gets_its_hooks(tmp_path: Path) -> None:
    """The lookups are kept per handler; an unhashable handler is looked at each time."""
    maillog = MailLog(tmp_path / "logs", appliance="gateway gw.example.test", serial="SN")
    context = ServerContext(maillog, IdAllocator(tmp_path / "ids.json"), "gw.example.test")
    listener = Listener(name="IncomingMail", protocol="SMTP", interface_name="Incoming Mail",
                        port=0, listen_queue_size=50, type="public", hat=parse_hat(ACCEPT_ALL),
                        rat=make_rat([("ALL", "ACCEPT", 0)]))

    class Unhashable(BaseHandler):
        __hash__ = None  # type: ignore[assignment]

    handler = Unhashable(context)

    async def make() -> PvoqSMTP:
        return PvoqSMTP(handler, listener=listener, interface_ip="127.0.0.1", context=context)

    session = asyncio.run(make())
    assert session._handle_hooks["MAIL"] == handler.handle_MAIL
    assert session._ehlo_hook_ver == "new"


class TestCommandLineLog:
    """aiosmtpd logs every command line through `sanitized_log`; pvoq's stand-in masks
    a line only when the logger writes its level, and masks it as aiosmtpd does then."""

    AUTH_LINE = b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"

    def test_the_command_loop_uses_the_quiet_one(self) -> None:
        assert aiosmtpd.smtp.sanitized_log is setup.quiet_sanitized_log

    def test_a_line_the_logger_would_not_write_is_not_masked(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[object] = []
        monkeypatch.setattr(setup, "_sanitized_log", lambda *a, **k: calls.append(a))
        log = logging.getLogger("mail.log")
        monkeypatch.setattr(log, "level", logging.WARNING)
        setup.quiet_sanitized_log(log.info, "%r >> %r", ("127.0.0.1", 1), self.AUTH_LINE)
        setup.quiet_sanitized_log(log.debug, "readline: %r", self.AUTH_LINE)
        assert calls == []
        setup.quiet_sanitized_log(log.warning, "%r", self.AUTH_LINE)
        assert len(calls) == 1

    def test_a_line_written_is_masked_as_aiosmtpd_masks_it(
            self, caplog: pytest.LogCaptureFixture) -> None:
        log = logging.getLogger("mail.log")
        with caplog.at_level(logging.INFO, logger="mail.log"):
            setup.quiet_sanitized_log(log.info, "%r >> %r", ("127.0.0.1", 1), self.AUTH_LINE)
        (record,) = [r for r in caplog.records if r.name == "mail.log"]
        assert b"AGFsaWNl" not in record.getMessage().encode()
        assert "AUTH PLAIN ********" in record.getMessage()
