"""Key files of the SSH link: own keys, authorized keys, one-time tokens, pins."""

from __future__ import annotations

import stat
from pathlib import Path

import asyncssh
import pytest

from pvoq.remote.keys import (
    AuthorizedKeys,
    EnrolTokens,
    Pin,
    PinnedGateways,
    fingerprint,
    load_or_create_key,
    parse_public_key,
    public_line,
)


class TestOwnKey:
    def test_created_once_with_a_private_file_and_reused(self, tmp_path: Path) -> None:
        """The first call creates an Ed25519 key (mode 0600); the next call reads it back."""
        path = tmp_path / "id_ed25519"
        first = load_or_create_key(path, comment="manager.example.test")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.with_name("id_ed25519.pub").read_text().strip().endswith(
            "manager.example.test")
        assert fingerprint(load_or_create_key(path)) == fingerprint(first)
        assert fingerprint(first).startswith("SHA256:")


class TestAuthorizedKeys:
    def test_add_find_and_no_duplicates(self, tmp_path: Path) -> None:
        """An added key is found with its name; adding it again changes nothing."""
        keys = AuthorizedKeys(tmp_path / "authorized_keys")
        key = asyncssh.generate_private_key("ssh-ed25519")
        other = asyncssh.generate_private_key("ssh-ed25519")
        assert keys.find(key) is None
        assert keys.add(key, "manager.example.test") is True
        assert keys.add(key, "again") is False
        assert keys.find(key) == "manager.example.test"
        assert keys.find(other) is None
        assert len(keys.entries()) == 1

    def test_public_key_text_is_checked(self) -> None:
        """A key file that is not an OpenSSH public key is refused."""
        key = asyncssh.generate_private_key("ssh-ed25519")
        assert public_line(parse_public_key(public_line(key, "x"))) == public_line(key)
        with pytest.raises(ValueError, match="not an OpenSSH public key"):
            parse_public_key("ssh-ed25519 not-base64!")


class TestEnrolTokens:
    def test_a_token_works_once(self, tmp_path: Path) -> None:
        """A valid token is accepted once, then refused; an unknown one is refused."""
        tokens = EnrolTokens(tmp_path / "t.json")
        token = tokens.issue(60)
        assert tokens.consume("wrong") is False
        assert tokens.consume(token) is True
        assert tokens.consume(token) is False

    def test_an_expired_token_is_refused(self, tmp_path: Path) -> None:
        """A token used after its lifetime is refused."""
        now = [1000.0]
        tokens = EnrolTokens(tmp_path / "t.json", clock=lambda: now[0])
        token = tokens.issue(60)
        now[0] += 61
        assert tokens.consume(token) is False

    def test_tokens_are_stored_as_digests(self, tmp_path: Path) -> None:
        """The token itself never reaches the disk."""
        tokens = EnrolTokens(tmp_path / "t.json")
        token = tokens.issue(60)
        assert token not in (tmp_path / "t.json").read_text()


class TestPins:
    def test_round_trip_case_insensitive_and_remove(self, tmp_path: Path) -> None:
        """A pin is found by hostname in any case, and can be removed."""
        pins = PinnedGateways(tmp_path / "known.json")
        key = asyncssh.generate_private_key("ssh-ed25519")
        pins.put(Pin("GW1.example.test", "127.0.0.1", 2222, public_line(key),
                     fingerprint(key), 1.0))
        found = pins.get("gw1.EXAMPLE.test")
        assert found is not None and found.port == 2222
        assert fingerprint(found.key()) == fingerprint(key)
        assert pins.remove("gw1.example.test") is True
        assert pins.get("gw1.example.test") is None
