"""Tests for the scan part of the gateway configuration: filters, anti-virus, outbreak."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvoq.config.errors import ConfigError
from pvoq.config.loader import load_config
from pvoq.config.model import ROLE_GATEWAY, Config
from pvoq.config.template import ApplianceSpec
from pvoq.deploy import init_appliance
from pvoq.scan.message import MimeLimits
from pvoq.scan.pipeline import limits_of


@pytest.fixture(scope="module")
def gateway_xml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gateway configuration as `pvoq init` writes it (with clamd and a rules file)."""
    root = tmp_path_factory.mktemp("gw")
    return init_appliance(root / "gw", ApplianceSpec(
        role=ROLE_GATEWAY, hostname="gw1.example.test", serial="SN1",
        clamd_socket="/run/clamav/clamd.ctl", outbreak_rules_file="rules.json"),
        ca_dir=root / "ca")


def load_with(path: Path, old: str, new: str) -> Config:
    text = path.read_text()
    assert old in text
    changed = path.with_name("changed.xml")
    changed.write_text(text.replace(old, new, 1))
    return load_config(changed)


def error_with(path: Path, old: str, new: str) -> tuple[ConfigError, int]:
    """The error of a changed configuration, and the file line where *new* begins."""
    with pytest.raises(ConfigError) as info:
        load_with(path, old, new)
    text = path.read_text().replace(old, new, 1)
    return info.value, text[:text.index(new)].count("\n") + 1


class TestScanConfig:
    def test_template_loads(self, gateway_xml: Path) -> None:
        """The written gateway configuration has a message filter, clamd and a rules file."""
        scan = load_config(gateway_xml).scan
        assert [f.name for f in scan.message_filters] == ["no_exe"]
        assert scan.antivirus.clamd_socket == "/run/clamav/clamd.ctl"
        assert scan.antivirus.unscannable_action == "deliver"
        assert scan.outbreak.rules_file == gateway_xml.parent / "rules.json"
        assert scan.outbreak.quarantine_threat_level == 3
        assert [f.name for f in scan.content_filters] == ["confidential_subject"]

    def test_scanner_processes_are_automatic_unless_set(self, gateway_xml: Path) -> None:
        """`<scan_pipeline><processes>` sets the scanner processes; absent, it is left to the
        CPUs; zero is an error naming the field."""
        assert load_config(gateway_xml).scan.processes is None
        section = "  <scan_pipeline>\n    <processes>3</processes>\n  </scan_pipeline>\n</config>"
        assert load_with(gateway_xml, "</config>", section).scan.processes == 3
        err, _ = error_with(gateway_xml, "</config>", section.replace(">3<", ">0<"))
        assert err.field == "config.scan_pipeline.processes"

    def test_filter_parse_error_names_file_line_and_column(self, gateway_xml: Path) -> None:
        """A filter syntax error is a ConfigError at the file line, with the column."""
        bad = '  <message_filters>\n    ok: if true { deliver(); }\n    x: if subjekt == "a" {}\n'
        err, line = error_with(gateway_xml, "  <message_filters>\n", bad)
        assert err.line == line + 2
        assert err.field == "config.message_filters"
        assert err.message == "column 11: unknown condition 'subjekt'"
        assert str(err).startswith(f"{gateway_xml.with_name('changed.xml')}:{line + 2}: ")

    def test_unknown_quarantine_is_refused_at_load(self, gateway_xml: Path) -> None:
        """A filter naming a quarantine that does not exist is refused at load."""
        err, _ = error_with(gateway_xml, 'quarantine("Policy")', 'quarantine("Bulk")')
        assert "unknown quarantine 'Bulk'" in err.message

    def test_content_filter_rules_in_the_language(self, gateway_xml: Path) -> None:
        """<content_filters><rules> holds content filters in the filter language."""
        cfg = load_with(gateway_xml, "  <content_filters>\n",
                        "  <policy_quarantines><quarantine>Bulk</quarantine>"
                        "</policy_quarantines>\n  <content_filters>\n"
                        '    <rules>bulk: if header("Precedence") == "bulk" '
                        '{ quarantine("Bulk"); }</rules>\n')
        assert [f.name for f in cfg.scan.content_filter_rules] == ["bulk"]
        assert "Bulk" in cfg.scan.quarantines

    @pytest.mark.parametrize(("old", "new", "field"), [
        ("<unscannable_action>deliver</unscannable_action>",
         "<unscannable_action>ignore</unscannable_action>", "antivirus.unscannable_action"),
        ("<timeout_seconds>30</timeout_seconds>\n    <unscannable",
         "<timeout_seconds>-1</timeout_seconds>\n    <unscannable", "antivirus.timeout_seconds"),
        ("<quarantine_threat_level>3</quarantine_threat_level>",
         "<quarantine_threat_level>6</quarantine_threat_level>",
         "outbreak_filters.quarantine_threat_level"),
        ("<clamd_socket>", "<clamd_host>127.0.0.1</clamd_host><clamd_socket>",
         "antivirus.clamd_host"),
    ])
    def test_bad_values_name_their_field(self, gateway_xml: Path, old: str, new: str,
                                         field: str) -> None:
        """A bad anti-virus or outbreak value is refused naming its field and line."""
        err, line = error_with(gateway_xml, old, new)
        assert err.field.endswith(field)
        assert err.line == line

    def test_mail_policies(self, gateway_xml: Path) -> None:
        """<mail_policies> load in order; a recipient gets the first policy it matches."""
        cfg = load_with(gateway_xml, "</config>", (
            "<mail_policies><policy><name>Execs</name><recipient>^CEO@</recipient>"
            "<antivirus>false</antivirus><content_filters>x: if true { deliver(); }"
            "</content_filters></policy></mail_policies></config>"))
        (policy,) = cfg.scan.policies
        assert (policy.name, policy.antivirus_enabled, policy.outbreak_enabled) == (
            "Execs", False, None)
        assert [f.name for f in policy.content_filter_rules or ()] == ["x"]
        assert cfg.scan.policy_for("ceo@example.com") is policy
        assert cfg.scan.policy_for("bob@example.com") is None

    def test_bad_mail_policy_recipient(self, gateway_xml: Path) -> None:
        """A policy recipient that is not a regex is refused on its line."""
        err, line = error_with(gateway_xml, "</config>",
                               "<mail_policies><policy><name>A</name><recipient>(</recipient>"
                               "</policy></mail_policies></config>")
        assert err.field.endswith("mail_policies.policy.recipient")
        assert err.line == line


def test_the_mime_limits_are_configurable(gateway_xml: Path) -> None:
    """`<scan_pipeline>` sets the MIME limits and the temporary failures per message."""
    scan_settings = load_config(gateway_xml).scan
    assert limits_of(scan_settings) == MimeLimits(50, 1000, 1000)
    assert scan_settings.max_temporary_failures == 5
    section = ("  <scan_pipeline>\n    <max_mime_depth>20</max_mime_depth>\n"
               "    <max_mime_parts>300</max_mime_parts>\n    <max_headers>200</max_headers>\n"
               "    <max_temporary_failures>3</max_temporary_failures>\n"
               "  </scan_pipeline>\n</config>")
    loaded = load_with(gateway_xml, "</config>", section).scan
    assert limits_of(loaded) == MimeLimits(20, 300, 200)
    assert loaded.max_temporary_failures == 3
    err, _ = error_with(gateway_xml, "</config>", section.replace(">20<", ">0<"))
    assert err.field == "config.scan_pipeline.max_mime_depth"
