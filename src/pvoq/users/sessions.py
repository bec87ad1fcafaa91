"""Server-side login sessions of the web console: a random id in a cookie, the record here.

A session ends at logout, after `idle_seconds` without a request, or
`absolute_seconds` after login, whichever comes first. Each holds its own
CSRF token. Records live in the appliance process's memory: a restart logs
everybody out; a reload (which restarts the web server in place) does not.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    user: str
    client: str
    csrf: str
    created: float
    seen: float


class SessionStore:
    def __init__(self, *, idle_seconds: float = 1800.0, absolute_seconds: float = 43200.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.idle_seconds, self.absolute_seconds = idle_seconds, absolute_seconds
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, user: str, client: str) -> Session:
        now = self.clock()
        with self._lock:
            self._expire(now)
            if len(self._sessions) >= MAX_SESSIONS:   # drop the oldest
                oldest = min(self._sessions.values(), key=lambda s: s.seen)
                del self._sessions[oldest.id]
            session = Session(secrets.token_urlsafe(32), user, client,
                              secrets.token_urlsafe(32), now, now)
            self._sessions[session.id] = session
            return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session *session_id* (its idle clock restarted), or None."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[session_id]
                return None
            session.seen = now
            return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def end_user(self, user: str) -> int:
        """End every session of *user* (deleted, password or role changed)."""
        with self._lock:
            gone = [s.id for s in self._sessions.values() if s.user == user]
            for sid in gone:
                del self._sessions[sid]
            return len(gone)

    def _expired(self, session: Session, now: float) -> bool:
        return (now - session.seen > self.idle_seconds
                or now - session.created > self.absolute_seconds)

    def _expire(self, now: float) -> None:
        for sid in [s.id for s in self._sessions.values() if self._expired(s, now)]:
            del self._sessions[sid]

    def __len__(self) -> int:
        return len(self._sessions)
