"""`user.*` operator commands: the appliance's users, from `pvoq cli user ...`.

`user.add`, `user.passwd`, `user.role`, `user.delete` change the store (the
administrator's: `permissions`); `user.list` shows it (never a hash);
`user.whoami` says who the caller is to the appliance. `user.token.add`,
`user.token.list`, `user.token.revoke`: a user's REST API tokens (the secret
is in the answer to `add` only). A password travels in
the request's arguments over the admin socket (mode 0600), never in argv;
it is never logged or echoed. Changing a user's password or role, or
deleting it, ends its console sessions.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pvoq.admin.protocol import Peer
from pvoq.admin.registry import CommandSet, command
from pvoq.maillog import MailLog
from pvoq.users.sessions import SessionStore
from pvoq.users.store import UserError, UserStore


def _text(args: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise UserError(f"{name}: required text argument")
    return value


class UserCommands(CommandSet):
    def __init__(self, users: UserStore, sessions: SessionStore, maillog: MailLog) -> None:
        self.users, self.sessions, self.maillog = users, sessions, maillog

    @command("user.list")
    async def list(self, args: dict[str, Any]) -> dict[str, Any]:
        accounts = self.users.list()
        lines = [f"{a.name:<20} {a.role:<10} "
                 f"{','.join(a.quarantines) if a.quarantines else '-':<20} "
                 f"{a.unix_user or '-'}" for a in accounts]
        header = f"{'USER':<20} {'ROLE':<10} {'QUARANTINES':<20} UNIX USER"
        locked = {a.name: self.users.locked_until(a.name) for a in accounts}
        return {"text": "\n".join([header, *lines]) if accounts else "No users.",
                "data": {"users": [{**a.public(), "locked_until": locked[a.name]}
                                   for a in accounts]}}

    @command("user.add", peer=True)
    async def add(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        account = await asyncio.to_thread(  # argon2 takes a while: not on the event loop
            self.users.add, str(_text(args, "name")), str(_text(args, "password")),
            str(_text(args, "role")), quarantines=args.get("quarantines"),
            unix_user=_text(args, "unix_user", required=False))
        self.maillog.info(f"User {account.name} added with role {account.role} "
                          f"by {peer.actor} ({peer.origin})")
        return {"text": f"User {account.name} added ({account.role}).",
                "data": account.public()}

    @command("user.passwd", peer=True)
    async def passwd(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        account = await asyncio.to_thread(self.users.passwd, str(_text(args, "name")),
                                          str(_text(args, "password")))
        ended = self.sessions.end_user(account.name)
        self.maillog.info(f"User {account.name} password changed by {peer.actor} "
                          f"({peer.origin}); {ended} console sessions ended")
        return {"text": f"Password of {account.name} changed.", "data": account.public()}

    @command("user.role", peer=True)
    async def role(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        name = str(_text(args, "name"))
        account = self.users.set_role(name, str(_text(args, "role")), args.get("quarantines"))
        if "unix_user" in args:
            account = self.users.bind(name, _text(args, "unix_user", required=False))
        self.sessions.end_user(account.name)
        self.maillog.info(f"User {account.name} role set to {account.role} by {peer.actor} "
                          f"({peer.origin})")
        return {"text": f"User {account.name} is now {account.role}.", "data": account.public()}

    @command("user.delete", peer=True)
    async def delete(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        name = str(_text(args, "name"))
        self.users.delete(name)
        self.sessions.end_user(name)
        self.maillog.info(f"User {name} deleted by {peer.actor} ({peer.origin})")
        return {"text": f"User {name} deleted.", "data": {"name": name}}

    @command("user.token.add", peer=True)
    async def token_add(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        name = str(_text(args, "name"))
        token, secret = self.users.add_token(name, str(args.get("label") or ""))
        self.maillog.info(f"API token {token['id']} added for user {name} by {peer.actor} "
                          f"({peer.origin})")
        return {"text": f"API token {token['id']} for {name} (shown once, keep it):\n{secret}",
                "data": {**token, "user": name, "token": secret}}

    @command("user.token.list")
    async def token_list(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(_text(args, "name"))
        tokens = self.users.tokens(name)
        return {"text": "\n".join(f"{t['id']}  {t['label'] or '-'}" for t in tokens)
                or f"User {name} has no API token.",
                "data": {"user": name, "tokens": list(tokens)}}

    @command("user.token.revoke", peer=True)
    async def token_revoke(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        name, token_id = str(_text(args, "name")), str(_text(args, "id"))
        self.users.revoke_token(name, token_id)
        self.maillog.info(f"API token {token_id} of user {name} revoked by {peer.actor} "
                          f"({peer.origin})")
        return {"text": f"API token {token_id} of {name} revoked.",
                "data": {"user": name, "id": token_id}}

    @command("user.whoami", peer=True)
    async def whoami(self, args: dict[str, Any], peer: Peer) -> dict[str, Any]:
        granted = f" ({', '.join(peer.quarantines)})" if peer.quarantines else ""
        return {"text": f"{peer.actor}: {peer.role}{granted}, from {peer.origin}",
                "data": {"user": peer.actor, "role": peer.role,
                         "quarantines": list(peer.quarantines) if peer.quarantines else None,
                         "origin": peer.origin}}
