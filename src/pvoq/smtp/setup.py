"""A session's set-up: what aiosmtpd's `SMTP.__init__` does, the lookups made once per listener.

aiosmtpd sets up every new session by looking at the session class and at
the handler: `inspect.getmembers` for the AUTH mechanisms of both, `dir()`
of the handler for its hooks, `inspect.signature` of the EHLO hook, `dir()`
of the session for its command methods, and `asyncio.get_event_loop()`
under a warnings filter. On a listener that takes a new connection per
message that was a tenth of the gateway's event loop, and the answers are
the same for every session of a listener: `setup_session` computes them
once per (session class, handler) and gives each session the same
attributes `SMTP.__init__` would (`tests/unit/smtp/test_session_setup.py`
compares the two). Only the parameters our sessions use are taken; the
others (AUTH callbacks, PROXY protocol, call limits) keep aiosmtpd's
defaults.

The same goes for aiosmtpd's log of every command line: its command loop
passes each line through `sanitized_log` (an AUTH line masked) twice, at
DEBUG and at INFO, and the masking ran whether or not its logger writes
those levels (2.5 µs a command, four commands a CPQ transfer).
`quiet_sanitized_log` takes its place in aiosmtpd's module: it asks the
logger first and masks only a line that will be written.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiosmtpd.smtp
from aiosmtpd.smtp import SMTP, _AuthMechAttr, login_always_fail, make_loop

_log = logging.getLogger("mail.log")  # aiosmtpd's logger: its two set-up warnings
_sanitized_log = aiosmtpd.smtp.sanitized_log
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}


def quiet_sanitized_log(func: Callable[..., None], msg: Any, *args: Any,
                        **kwargs: Any) -> None:
    """aiosmtpd's `sanitized_log`, once the logger of *func* (a bound `debug`, `info`...)
    is known to write that level; anything else goes to the original as it is."""
    logger = getattr(func, "__self__", None)
    level = _LEVELS.get(getattr(func, "__name__", ""))
    if isinstance(logger, logging.Logger) and level is not None and \
            not logger.isEnabledFor(level):
        return
    _sanitized_log(func, msg, *args, **kwargs)


aiosmtpd.smtp.sanitized_log = quiet_sanitized_log  # looked up by its command loop per call


@dataclass(frozen=True)
class _Parts:
    """What every session of one class with one handler shares."""

    auth: tuple[tuple[str, str, Any], ...]  # (mechanism, session attribute, handler method)
    hooks: dict[str, Callable[..., Any]]     # the handler's `handle_*` methods, bound
    ehlo_hook_ver: str | None


_PARTS: weakref.WeakKeyDictionary[Any, dict[type, _Parts]] = weakref.WeakKeyDictionary()


def _parts(cls: type, handler: Any) -> _Parts:
    try:
        by_class = _PARTS.get(handler)
        if by_class is None:
            by_class = _PARTS.setdefault(handler, {})
    except TypeError:  # a handler that cannot be weakly referenced or hashed: each time
        by_class = {}
    found = by_class.get(cls)
    if found is None:
        found = by_class[cls] = _compute(cls, handler)
    return found


def _compute(cls: type, handler: Any) -> _Parts:
    """aiosmtpd's lookups, made on the class (and the handler) instead of a session."""
    auth: list[tuple[str, str, Any]] = []
    for obj, builtin in ((cls, True), (handler, False)):
        for name, member in inspect.getmembers(obj):
            if not name.startswith("auth_"):
                continue
            mechanism = getattr(member, "__auth_mechanism_name__",
                                name.replace("auth_", "").replace("__", "-"))
            auth.append((mechanism, name, None if builtin else member))
    hooks = {m.replace("handle_", ""): getattr(handler, m) for m in dir(handler)
             if m.startswith("handle_")}
    ehlo = hooks.get("EHLO")
    version: str | None = None
    if ehlo is not None:
        count = len(inspect.signature(ehlo).parameters)
        if count not in (4, 5):
            raise RuntimeError("Unsupported EHLO Hook")
        version = "old" if count == 4 else "new"
    return _Parts(tuple(auth), hooks, version)


class BoundCommands(Mapping[str, Any]):
    """A session's command table (`_smtp_methods`): the class's functions, bound on use."""

    __slots__ = ("_table", "_session")

    def __init__(self, table: dict[str, Callable[..., Any]], session: object) -> None:
        self._table = table
        self._session = session

    def __getitem__(self, name: str) -> Any:
        return self._table[name].__get__(self._session)

    def get(self, name: str, default: Any = None) -> Any:
        run = self._table.get(name)
        return default if run is None else run.__get__(self._session)

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table


def auth_methods(session: Any) -> dict[str, _AuthMechAttr]:
    """aiosmtpd's `_auth_methods` of *session* (read by EHLO after STARTTLS and by AUTH
    only: made then, not for every session)."""
    return {mechanism: _AuthMechAttr(getattr(session, name) if method is None else method,
                                     method is None)
            for mechanism, name, method in session._auth_parts}


def setup_session(session: SMTP, handler: Any, *, hostname: str, ident: str,
                  data_size_limit: int | None, timeout: float,
                  tls_context: ssl.SSLContext | None = None,
                  require_starttls: bool = False) -> None:
    """Give *session* what `SMTP.__init__(handler, ...)` with these parameters would."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = make_loop()
    self: Any = session
    self.__ident__ = ident
    self.loop = loop
    asyncio.StreamReaderProtocol.__init__(
        self, asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
        client_connected_cb=self._cb_client_connected, loop=loop)
    self.event_handler = handler
    self.data_size_limit = data_size_limit
    self.enable_SMTPUTF8 = False
    self._decode_data = False
    self.hostname = hostname
    self.tls_context = tls_context
    if tls_context:
        if tls_context.verify_mode not in {ssl.CERT_NONE, ssl.CERT_OPTIONAL}:
            _log.warning("tls_context.verify_mode not in {CERT_NONE, CERT_OPTIONAL}; this "
                         "might cause client connection problems")
        elif tls_context.check_hostname:
            _log.warning("tls_context.check_hostname == True; this might cause client "
                         "connection problems")
    self.require_starttls = tls_context and require_starttls
    self._timeout_duration = timeout
    self._timeout_handle = None
    self._tls_handshake_okay = True
    self._tls_protocol = None
    self._original_transport = None
    self.session = None
    self.envelope = None
    self.transport = None
    self._handler_coroutine = None
    self._auth_require_tls = True
    self._proxy_timeout = None
    self._auth_callback = login_always_fail
    self._authenticator = None
    self._auth_required = False
    parts = _parts(type(session), handler)
    self._auth_parts = parts.auth  # `_auth_methods` is made from these when first read
    self._handle_hooks = parts.hooks
    self._ehlo_hook_ver = parts.ehlo_hook_ver
    self._enforce_call_limit = False
