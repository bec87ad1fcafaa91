"""Who is on the admin socket, as a pvoq user: the kernel's uid mapped through the store.

- root (uid 0) and the appliance's own uid act as `admin` (under the pvoq
  user bound to their Unix account, if any, else under the Unix name);
- another uid acts as the pvoq user bound to its Unix account
  (`pvoq cli user add alice --unix-user alice`), with that user's role;
- any other uid is refused: the connection answers every command with
  `NotAUser`. Never an environment variable or a name the client sends.
"""

from __future__ import annotations

import os
from dataclasses import replace

from pvoq.admin.protocol import Peer
from pvoq.errors import Forbidden
from pvoq.quarantine.roles import ADMIN, Caller
from pvoq.users.permissions import check_command
from pvoq.users.store import UserStore


class NotAUser(Forbidden):
    """The admin socket's peer uid maps to no pvoq user."""


def identify(peer: Peer, users: UserStore, *, own_uid: int | None = None) -> Peer:
    """*peer* with the pvoq user, role and quarantines its uid maps to (see module doc)."""
    own = os.getuid() if own_uid is None else own_uid
    account = users.by_unix_user(peer.user)
    if peer.uid in (0, own):
        return replace(peer, role=ADMIN, quarantines=None,
                       account=account.name if account else None)
    if account is None:
        raise NotAUser(f"Unix user {peer.user} (uid {peer.uid}) is not a pvoq user: an "
                       f"administrator binds it with `pvoq cli user add NAME --unix-user "
                       f"{peer.user}`")
    return replace(peer, role=account.role, quarantines=account.quarantines,
                   account=account.name)


def authorize(command: str, peer: Peer) -> None:
    """`PermissionDenied` unless *peer*'s role may run *command*."""
    check_command(command, Caller(peer.actor, peer.origin, peer.role, peer.quarantines))


def web_peer(name: str, role: str, quarantines: tuple[str, ...] | None, origin: str) -> Peer:
    """The `Peer` a console (or API) user acts as on the in-process admin registry."""
    return Peer(pid=os.getpid(), uid=-1, gid=-1, user=name, role=role,
                quarantines=quarantines, account=name, via=origin)
