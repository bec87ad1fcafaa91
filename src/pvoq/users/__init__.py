"""The appliance's console users: accounts with argon2 password hashes, roles, lockout
(`store`), and the server-side login sessions of the web console (`sessions`)."""

from pvoq.users.sessions import Session, SessionStore
from pvoq.users.store import Account, AccountLocked, LoginFailed, UserError, UserStore

__all__ = ["Account", "AccountLocked", "LoginFailed", "Session", "SessionStore", "UserError",
           "UserStore"]
