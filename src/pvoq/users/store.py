"""Local users of one appliance: `<data>/users.json` (mode 0600), argon2 password hashes.

An `Account` has a name, a role (`quarantine.roles.ROLES`), the quarantines a
custom role is granted, and optionally the Unix account it is bound to (the
admin socket's peer uid maps to it). Passwords are never stored, logged or
returned: only their argon2id hashes (argon2-cffi).

API tokens belong to a user: `add_token` makes one (a random secret shown
once; only its SHA-256 is stored, with an id and a label), `token_owner`
finds the account a presented secret belongs to, so the token acts with its
user's role as it is now; deleting the user or revoking the token ends it.

Lockout: `max_failures` wrong passwords in a row lock the account for
`lockout_seconds`; while locked, even the right password is refused
(`AccountLocked`, which says until when). Failures are counted per account
in memory; a successful login clears them. Every write goes through
`fsutil.atomic_write`, so a crash leaves the old file or the new one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvoq.errors import Forbidden, Invalid, NotFound
from pvoq.fsutil import SECRET_MODE, atomic_write
from pvoq.quarantine.roles import CUSTOM, ROLES

if TYPE_CHECKING:
    from argon2 import PasswordHasher

USERS_FILE = "users.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


@functools.cache
def _hasher() -> PasswordHasher:
    """argon2's hasher, loaded when a password is first set or checked (not at start)."""
    from argon2 import PasswordHasher

    return PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the user does not exist: the answer takes as long.
    Made on first use: an appliance that never sees a login never pays for it."""
    return _hasher().hash("no such user, no such password")


class UserError(Invalid):
    """A user command's argument is wrong (name, role, password): 400 / exit 1."""


class LoginFailed(Forbidden):
    """Wrong user name or password (the text never says which)."""


class AccountLocked(Forbidden):
    """Too many wrong passwords: the account is locked until `until`."""

    def __init__(self, name: str, until: float) -> None:
        self.name, self.until = name, until
        when = time.strftime("%H:%M:%S UTC", time.gmtime(until))
        super().__init__(f"account {name} is locked after repeated failed logins "
                         f"until {when}")


@dataclass(frozen=True)
class Account:
    """One console user (the hash stays in the store: `Account` is safe to show)."""

    name: str
    role: str
    quarantines: tuple[str, ...] | None = None   # custom role: granted quarantines
    unix_user: str | None = None                  # bound Unix account (admin socket)
    created: float = 0.0
    changed: float = 0.0

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data["quarantines"] = list(self.quarantines) if self.quarantines is not None else None
        return data


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


def check_name(name: Any, what: str = "user name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise UserError(f"{what} must be 1-64 letters, digits, '.', '_', '@' or '-' "
                        f"(starting with a letter or digit), not {name!r}")
    return name


def check_password(password: Any) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def check_role(role: Any, quarantines: Any) -> tuple[str, tuple[str, ...] | None]:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if role != CUSTOM:
        if quarantines:
            raise UserError("quarantines are granted to the custom role only")
        return role, None
    if isinstance(quarantines, str):
        quarantines = [q.strip() for q in quarantines.split(",") if q.strip()]
    if not quarantines or not isinstance(quarantines, list | tuple) or not all(
            isinstance(q, str) and q for q in quarantines):
        raise UserError("the custom role needs the quarantines it is granted")
    return role, tuple(quarantines)


@dataclass
class _Record:
    account: Account
    password_hash: str = field(repr=False)
    tokens: list[dict[str, Any]] = field(default_factory=list, repr=False)


TOKEN_PREFIX = "pvoq_"
MAX_TOKENS = 20  # per user


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


class UserStore:
    """The users of one appliance (see module doc). Thread-safe; every change is durable
    before the method returns."""

    def __init__(self, path: Path, *, max_failures: int = 5, lockout_seconds: float = 900.0,
                 clock: Callable[[], float] = time.time,
                 on_lockout: Callable[[str, str, int], None] | None = None) -> None:
        self.path = Path(path)
        self.max_failures, self.lockout_seconds = max_failures, lockout_seconds
        self.clock = clock
        self.on_lockout = on_lockout      # (user, client, failures): log the lockout
        self._lock = threading.Lock()
        # argon2 costs CPU and memory on purpose: at most two verifications at once
        self._verifying = threading.BoundedSemaphore(2)
        self._failures: dict[str, _Failures] = {}
        self._records: dict[str, _Record] = self._load()

    # -- storage -------------------------------------------------------------
    def _load(self) -> dict[str, _Record]:
        try:
            raw = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise UserError(f"{self.path}: cannot read the users file: {exc}") from None
        records: dict[str, _Record] = {}
        for item in raw.get("users", []):
            q = item.get("quarantines")
            account = Account(item["name"], item["role"], tuple(q) if q is not None else None,
                              item.get("unix_user"), float(item.get("created", 0)),
                              float(item.get("changed", 0)))
            records[account.name] = _Record(account, item["password_hash"],
                                            list(item.get("tokens", [])))
        return records

    def _save(self) -> None:
        users = [{**r.account.public(), "password_hash": r.password_hash, "tokens": r.tokens}
                 for r in sorted(self._records.values(), key=lambda r: r.account.name)]
        atomic_write(self.path, json.dumps({"users": users}, indent=1).encode() + b"\n",
                     mode=SECRET_MODE)

    def reload(self) -> None:
        """Re-read the file (another process changed it)."""
        with self._lock:
            self._records = self._load()

    # -- queries -------------------------------------------------------------
    def get(self, name: str) -> Account | None:
        record = self._records.get(name)
        return record.account if record is not None else None

    def list(self) -> list[Account]:
        return [r.account for r in sorted(self._records.values(), key=lambda r: r.account.name)]

    def by_unix_user(self, unix_user: str) -> Account | None:
        for record in self._records.values():
            if record.account.unix_user == unix_user:
                return record.account
        return None

    def locked_until(self, name: str) -> float | None:
        state = self._failures.get(name)
        if state is not None and state.locked_until > self.clock():
            return state.locked_until
        return None

    def __len__(self) -> int:
        return len(self._records)

    # -- changes -------------------------------------------------------------
    def _require(self, name: str) -> _Record:
        record = self._records.get(name)
        if record is None:
            raise NotFound(f"no user named {name!r}")
        return record

    def add(self, name: str, password: str, role: str, *,
            quarantines: Any = None, unix_user: str | None = None) -> Account:
        check_name(name)
        check_password(password)
        role, granted = check_role(role, quarantines)
        if unix_user is not None:
            check_name(unix_user, "Unix user name")
        with self._lock:
            if name in self._records:
                raise UserError(f"user {name!r} exists")
            if unix_user is not None and self.by_unix_user(unix_user) is not None:
                raise UserError(f"Unix user {unix_user!r} is already bound to "
                                f"{self.by_unix_user(unix_user).name!r}")  # type: ignore[union-attr]
            now = self.clock()
            account = Account(name, role, granted, unix_user, now, now)
            self._records[name] = _Record(account, _hasher().hash(password))
            self._save()
            return account

    def passwd(self, name: str, password: str) -> Account:
        check_password(password)
        with self._lock:
            record = self._require(name)
            record.password_hash = _hasher().hash(password)
            record.account = replace(record.account, changed=self.clock())
            self._failures.pop(name, None)
            self._save()
            return record.account

    def set_role(self, name: str, role: str, quarantines: Any = None) -> Account:
        role, granted = check_role(role, quarantines)
        with self._lock:
            record = self._require(name)
            record.account = replace(record.account, role=role, quarantines=granted,
                                     changed=self.clock())
            self._save()
            return record.account

    def bind(self, name: str, unix_user: str | None) -> Account:
        if unix_user is not None:
            check_name(unix_user, "Unix user name")
        with self._lock:
            record = self._require(name)
            other = self.by_unix_user(unix_user) if unix_user else None
            if other is not None and other.name != name:
                raise UserError(f"Unix user {unix_user!r} is already bound to {other.name!r}")
            record.account = replace(record.account, unix_user=unix_user, changed=self.clock())
            self._save()
            return record.account

    def delete(self, name: str) -> None:
        with self._lock:
            self._require(name)
            del self._records[name]
            self._failures.pop(name, None)
            self._save()

    # -- API tokens ----------------------------------------------------------
    def add_token(self, name: str, label: str = "") -> tuple[dict[str, Any], str]:
        """A new API token for *name*: (its public record, the secret, shown only now)."""
        label = str(label)
        if len(label) > 64 or any(not c.isprintable() for c in label):
            raise UserError("a token label is at most 64 printable characters")
        with self._lock:
            record = self._require(name)
            if len(record.tokens) >= MAX_TOKENS:
                raise UserError(f"user {name!r} has {MAX_TOKENS} tokens already: revoke one")
            secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
            token = {"id": secrets.token_hex(4), "label": label, "created": self.clock(),
                     "sha256": token_digest(secret)}
            record.tokens.append(token)
            self._save()
            return _public_token(token), secret

    def tokens(self, name: str) -> tuple[dict[str, Any], ...]:
        return tuple(_public_token(t) for t in self._require(name).tokens)

    def revoke_token(self, name: str, token_id: str) -> None:
        with self._lock:
            record = self._require(name)
            kept = [t for t in record.tokens if t["id"] != token_id]
            if len(kept) == len(record.tokens):
                raise NotFound(f"user {name!r} has no token {token_id!r}")
            record.tokens = kept
            self._save()

    def token_owner(self, secret: str) -> Account | None:
        """The account whose token *secret* is, or None."""
        if not secret.startswith(TOKEN_PREFIX):
            return None
        digest = token_digest(secret)
        for record in list(self._records.values()):
            if any(secrets.compare_digest(t["sha256"], digest) for t in record.tokens):
                return record.account
        return None

    # -- login ---------------------------------------------------------------
    def authenticate(self, name: str, password: str, client: str) -> Account:
        """The account if *password* is *name*'s; `LoginFailed` or `AccountLocked` otherwise.
        *client*: where the attempt came from (for the lockout's log line). It takes a
        while (argon2): an event loop calls it in a thread (`asyncio.to_thread`)."""
        now = self.clock()
        state = self._failures.get(name)
        if state is not None and state.locked_until > now:
            raise AccountLocked(name, state.locked_until)
        record = self._records.get(name)
        ok = False
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

        with self._verifying:
            try:
                ok = _hasher().verify(record.password_hash if record else _dummy_hash(), password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                ok = False
        if ok and record is not None:
            self._failures.pop(name, None)
            return record.account
        if record is None:
            raise LoginFailed("wrong user name or password")
        with self._lock:
            state = self._failures.setdefault(name, _Failures())
            state.count += 1
            if state.count >= self.max_failures:
                state.locked_until = now + self.lockout_seconds
                count, state.count = state.count, 0
                if self.on_lockout is not None:
                    self.on_lockout(name, client, count)
                raise AccountLocked(name, state.locked_until)
        raise LoginFailed("wrong user name or password")


def _public_token(token: dict[str, Any]) -> dict[str, Any]:
    return {"id": token["id"], "label": token["label"], "created": token["created"]}
