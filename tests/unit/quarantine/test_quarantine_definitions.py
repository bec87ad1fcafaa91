"""Custom quarantines created, edited and deleted in the configuration file
(`quarantine.definitions`), over real files from `pvoq init`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from pvoq.admin.protocol import CommandError, Peer
from pvoq.config.loader import load_config
from pvoq.config.model import Config
from pvoq.config.template import ApplianceSpec
from pvoq.config.writer import version
from pvoq.deploy import init_appliance
from pvoq.quarantine.definitions import (
    DefinitionConflict,
    DefinitionError,
    NoSuchQuarantine,
    QuarantineConfigCommands,
    QuarantineForm,
    apply_change,
    split_retention,
    validate,
)
from pvoq.quarantine.roles import PermissionDenied
from pvoq.users.permissions import required_permission

PEER = Peer(pid=42, uid=1000, gid=1000, user="alice")


@pytest.fixture
def manager_file(tmp_path: Path) -> Path:
    path = init_appliance(tmp_path / "mgr", ApplianceSpec(
        role="manager", hostname="manager.test", serial="SN-M"), ca_dir=tmp_path / "ca")
    # an operator's comment, which the page's edits must keep
    path.write_bytes(path.read_bytes().replace(b"<delivery>",
                                               b"<!-- the operator's note -->\n  <delivery>"))
    return path


def change(path: Path, op: str, name: str, **form: Any) -> Config:
    edit = apply_change(path.read_bytes(), op, name,
                        None if op == "remove" else QuarantineForm.from_args({"name": name,
                                                                             **form}))
    config = validate(path, edit)
    path.write_bytes(edit.data)
    return config


class TestFileEdits:
    def test_add_creates_the_section_and_keeps_everything_else(self, manager_file: Path
                                                                ) -> None:
        before = manager_file.read_bytes()
        change(manager_file, "add", "HR", retention="14", default_action="release",
               subject_tag="[EARLY]")
        after = manager_file.read_bytes()
        assert b"<!-- the operator's note -->" in after
        added = after.replace(before[:before.rindex(b"</config>")], b"")
        assert added.startswith(b"  <quarantines>\n    <quarantine>\n      <name>HR</name>")
        hr = next(q for q in load_config(manager_file).quarantines if q.name == "HR")
        assert (hr.retention_seconds, hr.default_action, hr.subject_tag) == (
            14 * 86400, "release", "[EARLY]")

    def test_edit_rewrites_only_that_element(self, manager_file: Path) -> None:
        change(manager_file, "add", "HR", retention="14")
        change(manager_file, "add", "Legal", retention="2", retention_unit="hours")
        legal_before = manager_file.read_bytes().split(b"<name>Legal</name>")[1]
        change(manager_file, "edit", "HR", retention="3", free_up_space="on")
        data = manager_file.read_bytes()
        assert data.split(b"<name>Legal</name>")[1] == legal_before
        hr = next(q for q in load_config(manager_file).quarantines if q.name == "HR")
        assert (hr.retention_seconds, hr.free_up_space) == (3 * 86400, True)

    def test_editing_a_builtin_adds_its_override(self, manager_file: Path) -> None:
        config = change(manager_file, "edit", "Policy", retention="5", free_up_space="true")
        policy = next(q for q in config.quarantines if q.name == "Policy")
        assert policy.retention_seconds == 5 * 86400

    def test_remove_takes_the_element_out(self, manager_file: Path) -> None:
        change(manager_file, "add", "HR")
        change(manager_file, "add", "Legal")
        config = change(manager_file, "remove", "HR")
        assert [q.name for q in config.quarantines] == ["Legal"]
        assert b"HR" not in manager_file.read_bytes()

    def test_hostile_text_is_escaped_into_the_file(self, manager_file: Path) -> None:
        config = change(manager_file, "add", "<b>&x", default_action="release",
                        x_header="X-A: </x_header><bogus/>")
        q = config.quarantines[0]
        assert (q.name, q.x_header) == ("<b>&x", "X-A: </x_header><bogus/>")


class TestRefusals:
    @pytest.mark.parametrize(("form", "field", "words"), [
        ({"retention": "abc"}, "retention", "'abc'"),
        ({"retention": "0"}, "retention", "not a positive number"),
        ({"retention": "4000"}, "retention", "out of range"),   # days: > 10 years
        ({"retention": "-1"}, "retention", ""),
        ({"retention_unit": "weeks"}, "retention_unit", "weeks"),
        ({"default_action": "bounce"}, "default_action", "bounce"),
        ({"subject_position": "middle", "default_action": "release"}, "subject_position",
         "middle"),
        ({"subject_tag": "[X]"}, "default_action", "release"),
    ])
    def test_the_loader_names_the_form_field(self, manager_file: Path, form: dict[str, str],
                                             field: str, words: str) -> None:
        before = manager_file.read_bytes()
        with pytest.raises(DefinitionError) as caught:
            change(manager_file, "add", "HR", **form)
        assert caught.value.field == field
        assert words in str(caught.value)
        assert manager_file.read_bytes() == before

    def test_the_last_quarantine_freeing_space_cannot_stop(self, manager_file: Path) -> None:
        for name in ("Policy", "Virus", "Outbreak"):
            change(manager_file, "edit", name, free_up_space="false")
        with pytest.raises(DefinitionError) as caught:
            change(manager_file, "edit", "Unclassified", free_up_space="false")
        assert caught.value.field == "free_up_space"

    def test_unknown_fields_and_bad_names(self) -> None:
        with pytest.raises(DefinitionError) as caught:
            QuarantineForm.from_args({"name": "HR", "retension": "3"})
        assert caught.value.field == "retension"
        with pytest.raises(DefinitionError) as caught:
            QuarantineForm.from_args({"name": "HR", "free_up_space": "maybe"})
        assert caught.value.field == "free_up_space"
        with pytest.raises(DefinitionError) as caught:
            QuarantineForm.from_args({"name": "x" * 65}).check_name()
        assert caught.value.field == "name"
        with pytest.raises(DefinitionError) as caught:
            QuarantineForm.from_args({"name": " "}).check_name()
        assert caught.value.field == "name"

    def test_control_characters_are_refused_naming_the_field(self, manager_file: Path
                                                              ) -> None:
        with pytest.raises(DefinitionError) as caught:
            change(manager_file, "add", "HR", default_action="release", subject_tag="\x1b[31m")
        assert caught.value.field == "subject_tag"

    def test_a_clustered_file_is_not_edited(self, manager_file: Path) -> None:
        data = manager_file.read_bytes().replace(b"</config>", b"<cluster/></config>")
        with pytest.raises(DefinitionError, match="clustered"):
            apply_change(data, "add", "HR", QuarantineForm("HR"))


def test_split_retention() -> None:
    assert split_retention(14 * 86400) == ("14", "days")
    assert split_retention(36 * 3600) == ("36", "hours")
    assert split_retention(90) == ("1.5", "minutes")


class Harness:
    """The command set over a real file, with a reload that loads it as the appliance does."""

    def __init__(self, path: Path, *, reload_fails: bool = False) -> None:
        self.config = load_config(path)
        self.records: list[tuple[str, str, str, dict[str, Any]]] = []
        self.lines: list[str] = []
        self.reloads = 0
        self.reload_fails = reload_fails
        self.commands = QuarantineConfigCommands(
            lambda: self.config, self.reload, lambda *r: self.records.append(r),
            lambda name: 3 if name == "HR" else 0, self.lines.append)

    async def reload(self) -> str:
        self.reloads += 1
        if self.reload_fails:
            raise CommandError("Configuration reload refused: certificates")
        self.config = load_config(self.config.path)
        return "reloaded"

    def run(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        method = getattr(self.commands, name)
        result: dict[str, Any] = asyncio.run(method(args, PEER))
        return result


class TestCommands:
    def test_add_edit_remove_reload_and_audit(self, manager_file: Path) -> None:
        h = Harness(manager_file)
        listing = asyncio.run(h.commands.definitions({}))["data"]
        assert [q["name"] for q in listing["quarantines"]][:4] == [
            "Outbreak", "Policy", "Unclassified", "Virus"]
        out = h.run("add", {"name": "HR", "retention": "2", "version": listing["version"]})
        assert "Quarantine HR created" in out["text"]
        assert [q.name for q in h.config.quarantines] == ["HR"]
        h.run("edit", {"name": "HR", "retention": "3"})
        assert h.config.quarantines[0].retention_seconds == 3 * 86400
        out = h.run("remove", {"name": "HR"})
        assert "Its 3 messages got its default action (delete)" in out["text"]
        assert h.config.quarantines == ()
        assert h.reloads == 3
        assert [(r[0], r[2]) for r in h.records] == [
            ("alice", "quarantine-add"), ("alice", "quarantine-edit"),
            ("alice", "quarantine-remove")]
        assert h.records[0][1] == PEER.origin
        assert h.records[2][3]["held"] == 3
        assert "Quarantine 'HR' deleted by alice" in h.lines[-1]

    def test_duplicates_builtins_and_unknown_names(self, manager_file: Path) -> None:
        h = Harness(manager_file)
        h.run("add", {"name": "HR"})
        for op, args, error in [("add", {"name": "HR"}, DefinitionConflict),
                                ("add", {"name": "Policy"}, DefinitionConflict),
                                ("remove", {"name": "Virus"}, DefinitionError),
                                ("edit", {"name": "Nope"}, NoSuchQuarantine),
                                ("remove", {"name": "Nope"}, NoSuchQuarantine)]:
            with pytest.raises(error) as caught:
                h.run(op, args)
            assert caught.value.field == "name", (op, args)
        assert h.reloads == 1

    def test_a_stale_version_changes_nothing(self, manager_file: Path) -> None:
        h = Harness(manager_file)
        stale = version(manager_file.read_bytes())
        manager_file.write_bytes(manager_file.read_bytes() + b"\n")
        with pytest.raises(DefinitionConflict, match="changed since"):
            h.run("add", {"name": "HR", "version": stale})
        assert h.reloads == 0 and h.records == []

    def test_only_a_role_that_may_configure_changes_quarantines(self, manager_file: Path
                                                                 ) -> None:
        h = Harness(manager_file)
        before = manager_file.read_bytes()
        for role in ("operator", "helpdesk", "read-only"):
            peer = Peer(pid=1, uid=1001, gid=1001, user="oscar", role=role)
            with pytest.raises(PermissionDenied):
                asyncio.run(h.commands.add({"name": "HR"}, peer))
        assert manager_file.read_bytes() == before and h.reloads == 0
        for name in ("quarantine.add", "quarantine.edit", "quarantine.remove",
                     "quarantine.definitions", "quarantine.overview"):
            assert required_permission(name) == "configure"
        assert required_permission("audit.search") == "audit"

    def test_a_file_that_cannot_be_written_is_an_operator_error(self, manager_file: Path
                                                                 ) -> None:
        h = Harness(manager_file)
        before = manager_file.read_bytes()
        # where the candidate file goes, something that is not a file: the write fails
        (manager_file.parent / f".{manager_file.name}.{os.getpid()}.check.tmp").mkdir()
        with pytest.raises(DefinitionError, match="cannot write the configuration file"):
            h.run("add", {"name": "HR"})
        assert manager_file.read_bytes() == before and h.reloads == 0

    def test_a_refused_reload_puts_the_old_file_back(self, manager_file: Path) -> None:
        before = manager_file.read_bytes()
        h = Harness(manager_file, reload_fails=True)
        with pytest.raises(DefinitionError, match="the old one is back"):
            h.run("add", {"name": "HR"})
        assert manager_file.read_bytes() == before
        assert h.records == []
