"""Tests for pvoq.users.identity and pvoq.users.permissions: uid → user, and one table of
which role may run which operator command."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvoq.admin.protocol import Peer
from pvoq.quarantine.roles import Caller, PermissionDenied
from pvoq.users import UserStore
from pvoq.users.identity import NotAUser, authorize, identify, web_peer
from pvoq.users.permissions import check_command, required_permission

OWN = 1000


@pytest.fixture
def users(tmp_path: Path) -> UserStore:
    store = UserStore(tmp_path / "users.json")
    store.add("rita", "long password", "read-only", unix_user="rita")
    store.add("hank", "long password", "custom", quarantines=["HR"], unix_user="hank")
    store.add("ops", "long password", "operator", unix_user="appuser")
    return store


def test_root_and_own_uid_are_admin(users: UserStore) -> None:
    root = identify(Peer(1, 0, 0, "root"), users, own_uid=OWN)
    assert (root.role, root.actor, root.quarantines) == ("admin", "root", None)
    own = identify(Peer(1, OWN, OWN, "appuser"), users, own_uid=OWN)
    assert own.role == "admin" and own.actor == "ops"   # bound: its name, still admin


def test_bound_uid_acts_with_its_users_role(users: UserStore) -> None:
    rita = identify(Peer(7, 2001, 2001, "rita"), users, own_uid=OWN)
    assert (rita.role, rita.actor) == ("read-only", "rita")
    assert rita.origin == "admin-socket (uid 2001, pid 7)"
    hank = identify(Peer(8, 2002, 2002, "hank"), users, own_uid=OWN)
    assert hank.quarantines == ("HR",)


def test_unbound_uid_is_refused_naming_it(users: UserStore) -> None:
    with pytest.raises(NotAUser, match=r"Unix user mallory \(uid 2003\) is not a pvoq user"):
        identify(Peer(9, 2003, 2003, "mallory"), users, own_uid=OWN)


@pytest.mark.parametrize(("command", "permission"), [
    ("status", "view"), ("tophosts", "view"), ("pvo.check", "view"),
    ("quarantine.release", "search"), ("quarantine.expire", "configure"),
    ("audit.verify", "audit"), ("suspendlisteners", "configure"), ("reload", "configure"),
    ("user.add", "configure"), ("user.whoami", "view"), ("pvo.enable", "configure"),
    ("some.future.command", "configure"),
])
def test_required_permission(command: str, permission: str) -> None:
    assert required_permission(command) == permission


def test_authorize_by_role() -> None:
    readonly = web_peer("rita", "read-only", None, "web 192.0.2.1")
    authorize("status", readonly)
    authorize("quarantine.search", readonly)   # the service checks each action itself
    with pytest.raises(PermissionDenied, match="rita \\(role read-only\\) may not run resume"):
        authorize("resume", readonly)
    authorize("resume", web_peer("alice", "admin", None, "web 192.0.2.1"))
    with pytest.raises(PermissionDenied):
        check_command("audit.tail", Caller("oscar", "web", "operator"))
    assert readonly.actor == "rita" and readonly.origin == "web 192.0.2.1"


def test_tracking_is_refused_to_a_role_limited_to_some_quarantines() -> None:
    # Tracking shows every message's path, clean mail included: not for a custom role.
    with pytest.raises(PermissionDenied, match="limited to Policy"):
        check_command("track", Caller("carol", "web", "custom", ("Policy",)))
    check_command("track", Caller("rita", "web", "read-only"))
    check_command("track", Caller("hal", "web", "helpdesk"))
