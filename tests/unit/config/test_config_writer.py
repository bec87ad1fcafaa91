"""The appliance's own edits of its configuration file (`config.writer`)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pvoq.config.errors import ConfigError
from pvoq.config.template import ApplianceSpec
from pvoq.config.writer import (
    ConfigEditError,
    check_text,
    elements,
    indent_step,
    insert_child,
    remove_element,
    replace_file,
    text_value,
    version,
)
from pvoq.deploy import init_appliance

DOC = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
       b"<config>\n"
       b"  <!-- kept -->\n"
       b"  <a x=\">\"/>\n"
       b"  <b>t\xc3\xa9<c/></b>\n"
       b"  <d></d>\n"
       b"</config>\n")


class TestElements:
    def test_spans_cover_each_element_exactly(self) -> None:
        root = elements(DOC)
        assert [c.tag for c in root.children] == ["a", "b", "d"]
        a, b, d = root.children
        assert DOC[a.start:a.end] == b'<a x=">"/>'
        assert DOC[b.start:b.end] == "<b>té<c/></b>".encode()
        assert DOC[b.close:b.end] == b"</b>"
        assert b.text == "té"
        c = b.children[0]
        assert DOC[c.start:c.end] == b"<c/>"
        assert DOC[d.start:d.end] == b"<d></d>"
        assert DOC[root.close:root.end] == b"</config>"

    def test_a_doctype_is_refused(self) -> None:
        with pytest.raises(ConfigEditError, match="DTD"):
            elements(b'<!DOCTYPE config [<!ENTITY x "y">]><config>&x;</config>')

    def test_another_encoding_is_refused(self) -> None:
        with pytest.raises(ConfigEditError, match="ISO-8859-1"):
            elements(b'<?xml version="1.0" encoding="ISO-8859-1"?><config/>')

    def test_broken_xml_names_the_line(self) -> None:
        with pytest.raises(ConfigEditError) as caught:
            elements(b"<config>\n<a>\n</config>")
        assert caught.value.line == 3


class TestSplices:
    def test_remove_takes_the_line_and_keeps_the_rest(self) -> None:
        root = elements(DOC)
        out = remove_element(DOC, root.children[0])
        assert out == DOC.replace(b'  <a x=">"/>\n', b"")

    def test_insert_child_before_the_end_tag(self) -> None:
        root = elements(DOC)
        d = root.children[2]
        out = insert_child(DOC, d, "    <e/>\n", "  ")
        assert b"  <d>\n    <e/>\n  </d>\n" in out
        assert elements(out).children[2].children[0].tag == "e"

    def test_insert_child_into_an_empty_element(self) -> None:
        root = elements(DOC)
        a = root.children[0]
        out = insert_child(DOC, a, "    <e/>\n", "  ")
        assert b"  <a>\n    <e/>\n  </a>\n" in out
        assert b"<!-- kept -->" in out

    def test_indent_step_is_the_files_own(self) -> None:
        data = b"<config>\n\t<a/>\n</config>"
        assert indent_step(data, elements(data)) == "\t"

    def test_text_is_escaped_and_control_characters_refused(self) -> None:
        assert text_value("<b>&", "name") == "&lt;b&gt;&amp;"
        with pytest.raises(ConfigEditError) as caught:
            text_value("a\x1bb", "subject_tag")
        assert caught.value.field == "subject_tag"


@pytest.fixture
def manager_file(tmp_path: Path) -> Path:
    return init_appliance(tmp_path / "mgr", ApplianceSpec(
        role="manager", hostname="manager.test", serial="SN-M"), ca_dir=tmp_path / "ca")


class TestCheckAndReplace:
    def test_check_loads_as_the_appliance_would(self, manager_file: Path) -> None:
        config = check_text(manager_file, manager_file.read_bytes())
        assert config.hostname == "manager.test"
        assert [p.name for p in manager_file.parent.iterdir() if ".check." in p.name] == []

    def test_a_bad_text_is_located_in_the_real_file(self, manager_file: Path) -> None:
        bad = manager_file.read_bytes().replace(b"</config>", b"<bogus/></config>")
        with pytest.raises(ConfigError) as caught:
            check_text(manager_file, bad)
        assert caught.value.path == str(manager_file)
        assert "bogus" in str(caught.value)
        assert [p.name for p in manager_file.parent.iterdir() if ".check." in p.name] == []

    def test_a_missing_certificate_is_refused_as_config_check_does(
            self, manager_file: Path) -> None:
        bad = manager_file.read_bytes().replace(b"certs/cpq.pem", b"certs/gone.pem")
        with pytest.raises(ConfigError, match="gone.pem"):
            check_text(manager_file, bad)

    def test_replace_keeps_the_mode_and_refuses_a_file_changed_meanwhile(
            self, manager_file: Path) -> None:
        os.chmod(manager_file, 0o600)
        old = manager_file.read_bytes()
        replace_file(manager_file, old + b"\n", expected=old)
        assert manager_file.read_bytes() == old + b"\n"
        assert stat.S_IMODE(manager_file.stat().st_mode) == 0o600
        with pytest.raises(ConfigEditError, match="changed meanwhile"):
            replace_file(manager_file, b"x", expected=old)
        assert manager_file.read_bytes() == old + b"\n"
        assert version(old) != version(old + b"\n")
