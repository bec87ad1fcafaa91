"""Tests for pvoq.users.store: durable argon2 accounts, roles, Unix binding, lockout."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pvoq.errors import NotFound
from pvoq.users import AccountLocked, LoginFailed, UserError, UserStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_add_persists_a_hash_never_the_password(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("alice", "correct horse", "admin")
    raw = (tmp_path / "users.json").read_text()
    assert "correct horse" not in raw
    assert "$argon2id$" in raw
    assert stat.S_IMODE(os.stat(tmp_path / "users.json").st_mode) == 0o600
    again = UserStore(tmp_path / "users.json")
    assert again.authenticate("alice", "correct horse", "127.0.0.1").role == "admin"


def test_wrong_password_and_unknown_user_fail_alike(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("alice", "correct horse", "operator")
    with pytest.raises(LoginFailed) as wrong:
        store.authenticate("alice", "wrong horse", "127.0.0.1")
    with pytest.raises(LoginFailed) as unknown:
        store.authenticate("bob", "wrong horse", "127.0.0.1")
    assert str(wrong.value) == str(unknown.value)


def test_lockout_after_five_failures_then_expires(tmp_path: Path) -> None:
    clock = Clock()
    logged: list[tuple[str, str, int]] = []
    store = UserStore(tmp_path / "users.json", clock=clock,
                      on_lockout=lambda *a: logged.append(a))
    store.add("alice", "correct horse", "admin")
    for _ in range(4):
        with pytest.raises(LoginFailed):
            store.authenticate("alice", "nope nope", "192.0.2.7")
    with pytest.raises(AccountLocked):
        store.authenticate("alice", "nope nope", "192.0.2.7")
    assert logged == [("alice", "192.0.2.7", 5)]
    with pytest.raises(AccountLocked):   # even the right password, while locked
        store.authenticate("alice", "correct horse", "192.0.2.7")
    clock.now += 15 * 60 + 1
    assert store.authenticate("alice", "correct horse", "192.0.2.7").name == "alice"


def test_success_clears_the_failure_count(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("alice", "correct horse", "admin")
    for _ in range(4):
        with pytest.raises(LoginFailed):
            store.authenticate("alice", "nope nope", "::1")
    store.authenticate("alice", "correct horse", "::1")
    for _ in range(4):
        with pytest.raises(LoginFailed):
            store.authenticate("alice", "nope nope", "::1")


@pytest.mark.parametrize(("name", "password", "role", "quarantines", "word"), [
    ("", "correct horse", "admin", None, "user name"),
    ("a b", "correct horse", "admin", None, "user name"),
    ("x" * 65, "correct horse", "admin", None, "user name"),
    ("alice", "short", "admin", None, "password"),
    ("alice", "correct horse", "root", None, "role"),
    ("alice", "correct horse", "custom", None, "custom role"),
    ("alice", "correct horse", "operator", ["HR"], "custom role only"),
])
def test_bad_arguments_name_the_field(tmp_path: Path, name: str, password: str, role: str,
                                      quarantines: list[str] | None, word: str) -> None:
    store = UserStore(tmp_path / "users.json")
    with pytest.raises(UserError, match=word):
        store.add(name, password, role, quarantines=quarantines)
    assert not (tmp_path / "users.json").exists()


def test_role_passwd_bind_delete(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("hannah", "correct horse", "helpdesk", unix_user="hannah")
    assert store.by_unix_user("hannah") is not None
    store.set_role("hannah", "custom", "HR, Legal")
    assert UserStore(tmp_path / "users.json").get("hannah").quarantines == ("HR", "Legal")  # type: ignore[union-attr]
    store.passwd("hannah", "battery staple")
    with pytest.raises(LoginFailed):
        store.authenticate("hannah", "correct horse", "::1")
    with pytest.raises(UserError, match="already bound"):
        store.add("other", "correct horse", "admin", unix_user="hannah")
    with pytest.raises(UserError, match="exists"):
        store.add("hannah", "correct horse", "admin")
    store.delete("hannah")
    assert UserStore(tmp_path / "users.json").list() == []
    with pytest.raises(NotFound):
        store.delete("hannah")


def test_api_tokens_store_only_a_digest_and_survive_a_reload(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("fred", "correct horse", "operator")
    token, secret = store.add_token("fred", "backup job")
    assert secret.startswith("pvoq_") and len(secret) > 40
    raw = (tmp_path / "users.json").read_text()
    assert secret not in raw and token["id"] in raw
    again = UserStore(tmp_path / "users.json")
    owner = again.token_owner(secret)
    assert owner is not None and owner.name == "fred" and owner.role == "operator"
    assert again.tokens("fred") == (token,)
    assert again.token_owner(secret + "x") is None and again.token_owner("t-admin") is None
    with pytest.raises(NotFound, match="no token"):
        again.revoke_token("fred", "nope")
    with pytest.raises(UserError, match="label"):
        again.add_token("fred", "bad\x1blabel")
    with pytest.raises(NotFound):
        again.add_token("nobody")
