"""Tests for pvoq.quarantine.states: one definition of the states, actions and built-ins,
stored as the same text as before (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from qhelpers import put

from pvoq.config import filterlang
from pvoq.config.model import ScanSettings
from pvoq.quarantine import search, service, settings, store
from pvoq.quarantine.states import (
    ACTION_STATE,
    BUILTINS,
    Action,
    BuiltinQuarantine,
    State,
)
from pvoq.quarantine.store import QuarantineStore

StoreFactory = Callable[..., QuarantineStore]


class TestVocabulary:
    def test_values(self) -> None:
        """Each member is the string stored and shown before."""
        assert [str(s) for s in State] == ["held", "settling", "released", "deleted"]
        assert [str(a) for a in Action] == ["release", "delete"]
        assert list(BUILTINS) == ["Policy", "Virus", "Outbreak", "Unclassified"]
        assert ACTION_STATE == {"release": "released", "delete": "deleted"}
        assert json.dumps([State.HELD, Action.DELETE, BuiltinQuarantine.POLICY]) == (
            '["held", "delete", "Policy"]')

    def test_old_names_are_the_members(self) -> None:
        """The module-level names importers use are the enum members, defined once."""
        assert store.HELD is search.HELD is State.HELD
        assert (store.SETTLING, store.RELEASED, store.DELETED) == (
            State.SETTLING, State.RELEASED, State.DELETED)
        assert store.RELEASED is State.RELEASED and store.DELETED is State.DELETED
        assert settings.RELEASE is Action.RELEASE and settings.DELETE is Action.DELETE
        assert settings.UNCLASSIFIED is BuiltinQuarantine.UNCLASSIFIED
        assert settings.BUILTINS is store.BUILTIN_QUARANTINES is BUILTINS
        assert service.ACTIONS is store.ACTION_STATE is ACTION_STATE

    def test_the_builtins_are_the_configurations(self) -> None:
        """The built-in quarantines are defined once, in config (below quarantine)."""
        assert BuiltinQuarantine is filterlang.BuiltinQuarantine
        assert BUILTINS is filterlang.BUILTIN_QUARANTINES
        assert ScanSettings().quarantines is BUILTINS

    def test_builtin_defaults_cover_the_builtins(self) -> None:
        """Every built-in has its defaults; their JSON is the same text as plain strings'."""
        defaults = settings.builtin_defaults()
        assert list(defaults) == list(BUILTINS)
        policy = defaults["Policy"]
        assert policy.builtin and policy.default_action == "delete"
        assert json.loads(policy.to_json())["name"] == "Policy"
        assert settings.QuarantineSettings.from_json(policy.to_json()) == policy


class TestStored:
    @pytest.mark.parametrize("action", list(Action))
    def test_states_read_back_equal(self, make_store: StoreFactory, action: Action) -> None:
        """States written as members read back as plain strings equal to them."""
        s = make_store()
        put(s, 1, "Policy")
        record = s.get(1)
        assert record is not None
        assert record["state"] == State.HELD and type(record["state"]) is str
        assert [q["state"] for q in record["quarantines"]] == ["held"]
        outcome = s.act(1, ACTION_STATE[action])
        assert outcome.acted_on == ("Policy",)
        after = s.get(1)
        assert after is not None
        assert [q["state"] for q in after["quarantines"]] == [str(ACTION_STATE[action])]
        assert after["state"] == State.SETTLING
