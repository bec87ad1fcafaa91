"""What one SMTP session of a listener carries, apart from the protocol it speaks.

Owns the objects `smtp.server.PvoqSMTP` and its handlers pass around: the
`ServerContext` every session of an appliance shares, a connection's
`PvoqSession` (ICID, HAT decision, peer, TLS outcome) and a transaction's
`PvoqEnvelope` (MID, CPQ metadata chunks), `tls_info` (what a completed
STARTTLS negotiated), and `HookNames`, which keeps aiosmtpd's per-session
method lookup to the names it wants.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from pvoq.config.hat import HatDecision
from pvoq.counters import Counters
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.received import TlsInfo


@dataclass
class ServerContext:
    """What every session of an appliance shares."""

    maillog: MailLog
    ids: IdAllocator
    hostname: str
    counters: Counters | None = None
    spill_dir: Path | None = None  # where a large message is gathered as it arrives


class PvoqSession(Session):
    icid: int = 0
    decision: HatDecision | None = None
    peer_ip: str = ""
    peer_certificate: dict[str, Any] | None = None
    tls_failed: str = ""
    reverse_name: str | None = None  # the client's verified reverse DNS name, if looked up


class PvoqEnvelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.mid: int = 0
        self.cpq_chunks: list[str] = []
        self.counted = True  # False: not mail (a CPQ receipt or dry rescan), not counted
        self.cpq_transfer: Any = None  # the CPQ metadata decoded before the message is stored
        # BDAT (`smtp.chunking`): the message gathered so far (a `DataContent`), its
        # octets (the trace header's too), and whether a chunk of it was refused.
        self.chunks: Any = None
        self.chunked = 0
        self.chunks_refused = False
        # Handed to the handler as a task of its own, which nothing cancels when the
        # client leaves (`ChunkingSMTP._hand_over`): its store needs no shield.
        self.handed_over = False
        # Whether the message holds a bare CR or LF, found as its lines were measured
        # (`smtp.data`, `smtp.chunking`); None: not known, the handler looks.
        self.bare_newline: bool | None = None


def tls_info(session: Session) -> TlsInfo | None:
    """What the session's completed STARTTLS negotiated; None without TLS."""
    ssl_object = (session.ssl or {}).get("ssl_object")
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return TlsInfo(protocol=ssl_object.version() or "unknown",
                   cipher=cipher[0] if cipher else "unknown",
                   bits=cipher[2] if cipher else None)


_HOOK_PREFIXES = ("smtp_", "auth_", "handle_")
_HOOK_NAMES: dict[type, list[str]] = {}


class HookNames:
    """Keeps aiosmtpd's method lookup on sessions and handlers cheap.

    aiosmtpd finds a session's command methods and the handler's hooks with
    `dir()` and `inspect.getmembers()`, which fetch every attribute of both
    (`smtp.setup` now does that once per listener, not per session). `dir()`
    of these objects lists only the names that lookup wants (computed once per
    class), and the EHLO hook carries its signature; attribute access itself
    is unchanged. A session lists no `smtp_*` method: `LimitedSMTP` makes its
    command table once per class.
    """

    dir_prefixes: tuple[str, ...] = _HOOK_PREFIXES

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # aiosmtpd also reads the EHLO hook's signature at every session:
        # computed once here, inspect.signature() finds it at once.
        hook = cls.__dict__.get("handle_EHLO")
        if hook is not None and "__signature__" not in hook.__dict__:
            hook.__signature__ = inspect.signature(hook)

    def __dir__(self) -> list[str]:
        cls = type(self)
        names = _HOOK_NAMES.get(cls)
        if names is None:
            names = _HOOK_NAMES[cls] = [n for n in dir(cls) if n.startswith(cls.dir_prefixes)]
        return names
