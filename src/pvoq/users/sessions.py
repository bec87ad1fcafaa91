"""Server-side login sessions of the web console: a random id in a cookie, the record here.

A session ends at logout, after `idle_seconds` without a request, or
`absolute_seconds` after login, whichever comes first. Each holds its own
CSRF token.

The records survive a restart: with a *path* (`<data_dir>/sessions.json`,
mode 0600), each login and logout rewrites the file (write, fsync, rename),
and so does the appliance's stop, with each session's last request. The
file holds a SHA-256 of each session id, never the id itself: the cookie is
the only copy, so the file read by someone else logs nobody in. A crash
loses the last requests' times only (a session may end sooner, never later).
A file that cannot be read is set aside as `sessions.json.bad` and everybody
logs in again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pvoq.fsutil import SECRET_MODE, atomic_write

MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    user: str
    client: str
    csrf: str
    created: float
    seen: float


_STORED = ("user", "client", "csrf", "created", "seen")   # Session's fields but its id


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, path: Path | None = None, *, idle_seconds: float = 1800.0,
                 absolute_seconds: float = 43200.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.idle_seconds, self.absolute_seconds = idle_seconds, absolute_seconds
        self.clock = clock
        self.path = path
        self._sessions: dict[str, Session] = {}   # by the SHA-256 of the id
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            records = json.loads(path.read_bytes())
            sessions = [Session("", *(r[f] for f in _STORED)) for r in records]
            keys = [str(r["key"]) for r in records]
        except FileNotFoundError:
            return
        except (ValueError, TypeError, KeyError, AttributeError):
            with contextlib.suppress(OSError):
                os.replace(path, path.with_name(path.name + ".bad"))
            return
        now = self.clock()
        self._sessions = {k: s for k, s in zip(keys, sessions, strict=True)
                          if not self._expired(s, now)}

    def save(self) -> None:
        """Write the sessions to the file (each login and logout does; the stop too)."""
        if self.path is None:
            return
        with self._write_lock:
            with self._lock:
                records = [{"key": k, **{f: getattr(s, f) for f in _STORED}}
                           for k, s in self._sessions.items()]
            atomic_write(self.path, json.dumps(records).encode(), mode=SECRET_MODE)

    def create(self, user: str, client: str) -> Session:
        now = self.clock()
        with self._lock:
            self._expire(now)
            if len(self._sessions) >= MAX_SESSIONS:   # drop the oldest
                oldest = min(self._sessions, key=lambda k: self._sessions[k].seen)
                del self._sessions[oldest]
            session = Session(secrets.token_urlsafe(32), user, client,
                              secrets.token_urlsafe(32), now, now)
            self._sessions[_key(session.id)] = session
        self.save()
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session *session_id* (its idle clock restarted), or None."""
        if not session_id:
            return None
        now = self.clock()
        key = _key(session_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if self._expired(session, now):
                del self._sessions[key]
                return None
            session.seen = now
            session.id = session_id   # a session read from the file knows only its hash
            return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            gone = self._sessions.pop(_key(session_id or ""), None)
        if gone is not None:
            self.save()

    def end_user(self, user: str) -> int:
        """End every session of *user* (deleted, password or role changed)."""
        with self._lock:
            gone = [k for k, s in self._sessions.items() if s.user == user]
            for key in gone:
                del self._sessions[key]
        if gone:
            self.save()
        return len(gone)

    def _expired(self, session: Session, now: float) -> bool:
        return (now - session.seen > self.idle_seconds
                or now - session.created > self.absolute_seconds)

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if self._expired(s, now)]:
            del self._sessions[key]

    def __len__(self) -> int:
        return len(self._sessions)
