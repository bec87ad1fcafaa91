"""Tests for what the loader refuses: numbers out of range, elements given twice or unknown,
XML the parser cannot finish, and files too large, too wide or too deep (pvoq.config)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from test_loader import (
    GATEWAY_SPEC,
    MANAGER_SPEC,
    SMTP_PORT,
    assert_located,
    line_of,
    load_error,
    replace_once,
    write_config,
)

from pvoq.config import model, xmltree
from pvoq.config.errors import ConfigError
from pvoq.config.loader import load_config
from pvoq.config.model import RANGE, value_range
from pvoq.config.template import render

LISTENER_END = "<rat>\n    <rat_entry>\n      <rat_address>example.com"


@pytest.fixture
def gateway_text() -> str:
    return render(GATEWAY_SPEC)


@pytest.fixture
def manager_text() -> str:
    return render(MANAGER_SPEC)


def with_listener_setting(text: str, tag: str, value: str) -> str:
    """*text* with `<tag>value</tag>` added to the public listener."""
    return replace_once(text, f"<port>{SMTP_PORT}</port>",
                        f"<port>{SMTP_PORT}</port>\n    <{tag}>{value}</{tag}>")


class TestNumbers:
    @pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "1e400", "Infinity", "0",
                                     "-1", "1e9"])
    def test_listener_timeout_must_be_finite_and_in_range(
            self, tmp_path: Path, gateway_text: str, raw: str) -> None:
        """nan once cut sessions at random: every such value is refused on its line, with
        the field and the range."""
        text = with_listener_setting(gateway_text, "timeout_seconds", raw)
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field == "config.listeners.listener.timeout_seconds"
        assert "from 0.01 to 86400" in err.message
        assert repr(raw) in err.message
        assert_located(err, path, line_of(text, f"<timeout_seconds>{raw}<"))

    def test_retry_min_seconds_nan(self, tmp_path: Path, gateway_text: str) -> None:
        text = replace_once(gateway_text, "<retry_min_seconds>60<",
                            "<retry_min_seconds>nan<")
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field == "config.delivery.retry_min_seconds"
        assert err.message == ("not a finite number (a finite number from 0.01 to 604800): "
                               "'nan'")
        assert_located(err, path, line_of(text, "<retry_min_seconds>"))

    def test_max_message_size_of_ten_to_the_27(self, tmp_path: Path, gateway_text: str) -> None:
        text = with_listener_setting(gateway_text, "max_message_size", "1" + "0" * 27)
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field == "config.listeners.listener.max_message_size"
        assert err.message.startswith("out of range (a finite number from 1 to 1073741824)")
        assert_located(err, path, line_of(text, "<max_message_size>"))

    @pytest.mark.parametrize(("tag", "raw"), [
        ("max_message_size", "-5"), ("max_connections", "0"), ("listen_queue_size", "70000"),
        ("max_junk_commands", "²"), ("max_session_seconds", "1_000"),
        ("starttls_deadline_seconds", "7200")])
    def test_other_listener_numbers(self, tmp_path: Path, gateway_text: str, tag: str,
                                    raw: str) -> None:
        if tag == "listen_queue_size":
            text = replace_once(gateway_text, "<listen_queue_size>50</listen_queue_size>\n"
                                "    <type>public",
                                f"<listen_queue_size>{raw}</listen_queue_size>\n"
                                "    <type>public")
        else:
            text = with_listener_setting(gateway_text, tag, raw)
        err = load_error(write_config(tmp_path, text))
        assert err.field == f"config.listeners.listener.{tag}"
        assert "a finite number from" in err.message or "port" in err.message

    def test_quarantine_size_quota_cannot_be_negative_or_nan(
            self, tmp_path: Path, manager_text: str) -> None:
        for raw in ("-1", "nan"):
            text = manager_text.replace(
                "</config>", f"  <quarantine_store><max_size_mb>{raw}</max_size_mb>"
                "</quarantine_store>\n</config>")
            err = load_error(write_config(tmp_path, text))
            assert err.field == "config.quarantine_store.max_size_mb"
            assert "from 0 to 1000000000" in err.message

    def test_quarantine_name_longer_than_the_store_keeps(self, tmp_path: Path,
                                                         manager_text: str) -> None:
        text = manager_text.replace(
            "</config>", f"  <quarantines><quarantine><name>{'Q' * 65}</name>"
            "<retention>4</retention><retention_unit>days</retention_unit>"
            "</quarantine></quarantines>\n</config>")
        err = load_error(write_config(tmp_path, text))
        assert err.field == "config.quarantines.quarantine.name"
        assert "1 to 64 characters" in err.message

    def test_retention_beyond_ten_years(self, tmp_path: Path, manager_text: str) -> None:
        text = manager_text.replace(
            "</config>", "  <quarantines><quarantine><name>Policy</name>"
            "<retention>4000</retention><retention_unit>days</retention_unit>"
            "</quarantine></quarantines>\n</config>")
        err = load_error(write_config(tmp_path, text))
        assert err.field == "config.quarantines.quarantine.retention"
        assert err.message == "4000 days is out of range (a retention from 1 to 315360000 seconds)"

    def test_every_number_of_the_model_has_a_range(self) -> None:
        """A number added to the model without a range fails here, not in production."""
        missing = []
        for name in dir(model):
            owner = getattr(model, name)
            if not (isinstance(owner, type) and dataclasses.is_dataclass(owner)
                    and owner.__module__ == model.__name__):
                continue
            for f in dataclasses.fields(owner):
                if re.fullmatch(r"(int|float)( \| None)?", str(f.type)) and RANGE not in f.metadata:
                    missing.append(f"{name}.{f.name}")
                bounds = value_range(owner, f.name)
                required = f.default == 0 and bounds is not None and bounds[0] > 0
                if bounds is not None and isinstance(f.default, int | float) and not required:
                    assert bounds[0] <= f.default <= bounds[1], f"{name}.{f.name}"
        assert missing == []


class TestElements:
    def test_role_given_twice_names_both_lines(self, tmp_path: Path, gateway_text: str) -> None:
        """A second <role> was silently ignored (the first one won)."""
        text = replace_once(gateway_text, "<role>gateway</role>",
                            "<role>gateway</role>\n    <role>manager</role>")
        path = write_config(tmp_path, text)
        err = load_error(path)
        first, second = line_of(text, "<role>gateway"), line_of(text, "<role>manager")
        assert err.field == "config.system.role"
        assert err.message == (f"<role> is given twice, on lines {first} and {second}; "
                               "it takes one value")
        assert_located(err, path, second)

    @pytest.mark.parametrize("section", ["delivery", "ssl_config", "antivirus", "listeners"])
    def test_section_given_twice(self, tmp_path: Path, gateway_text: str, section: str) -> None:
        text = gateway_text.replace("</config>", f"  <{section}></{section}>\n</config>")
        err = load_error(write_config(tmp_path, text))
        assert err.field == f"config.{section}"
        assert "is given twice" in err.message

    def test_listener_value_given_twice(self, tmp_path: Path, gateway_text: str) -> None:
        text = with_listener_setting(gateway_text, "port", "2600")
        err = load_error(write_config(tmp_path, text))
        assert err.field == "config.listeners.listener.port"

    def test_misspelt_element_is_unknown(self, tmp_path: Path, gateway_text: str) -> None:
        """`<timeout_secs>` used to be ignored: the default then applied without a word."""
        text = with_listener_setting(gateway_text, "timeout_secs", "5")
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field == "config.listeners.listener.timeout_secs"
        assert err.message.startswith("unknown element <timeout_secs> in <listener> (known "
                                      "here: ")
        assert "<timeout_seconds>" in err.message
        assert_located(err, path, line_of(text, "<timeout_secs>"))

    def test_unknown_top_level_section(self, tmp_path: Path, gateway_text: str) -> None:
        text = gateway_text.replace("</config>", "  <antivirs/>\n</config>")
        err = load_error(write_config(tmp_path, text))
        assert err.field == "config.antivirs"

    def test_element_inside_a_value(self, tmp_path: Path, gateway_text: str) -> None:
        text = replace_once(gateway_text, "<role>gateway</role>", "<role>gateway<x/></role>")
        err = load_error(write_config(tmp_path, text))
        assert err.field == "config.system.role.x"

    def test_empty_or_bad_hostname(self, tmp_path: Path, gateway_text: str) -> None:
        for bad in ("", "   ", "gw 1.example.com", "-gw.example.com", "a" * 64 + ".com"):
            text = replace_once(gateway_text, f"<hostname>{GATEWAY_SPEC.hostname}<",
                                f"<hostname>{bad}<")
            err = load_error(write_config(tmp_path, text))
            assert err.field == "config.system.hostname", bad

    def test_duplicate_api_token(self, tmp_path: Path, manager_text: str) -> None:
        token = "<token><value>s3cret</value><user>{}</user><role>admin</role></token>"
        text = manager_text.replace(
            "</config>", f"  <api><port>8080</port>{token.format('a')}\n"
            f"{token.format('b')}</api>\n</config>")
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field == "config.api.token[2].value"
        assert err.line == line_of(text, "<user>b<")

    def test_generated_cpq_listener_port_clash(self, tmp_path: Path, gateway_text: str) -> None:
        """The cpq_listener generated from <pvo_quarantines> may not take a listener's port."""
        start = gateway_text.index("  <listener>\n    <listener_name>cpq_listener")
        end = gateway_text.index("</listener>", start) + len("</listener>\n")
        text = gateway_text[:start] + gateway_text[end:]
        text = replace_once(text, f"<port>{GATEWAY_SPEC.cpq_port}</port>",
                            f"<port>{SMTP_PORT}</port>")
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field == "config.pvo_quarantines.port"
        assert "already used by listener 'IncomingMail'" in err.message


class TestXml:
    def test_unclosed_element_at_the_end_of_the_file(
            self, tmp_path: Path, gateway_text: str) -> None:
        """`no element found` named a line past the end of the file."""
        text = replace_once(gateway_text, "</config>\n", "")
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field == "config"
        assert err.message == (f"<config> opened on line {line_of(text, '<config>')} "
                               "is not closed (the file ends)")
        assert_located(err, path, line_of(text, "<config>"))

    def test_unclosed_section(self, tmp_path: Path, gateway_text: str) -> None:
        """The closing tag of the parent was named, not the element left open."""
        text = replace_once(gateway_text, "</listeners>", "")
        err = load_error(write_config(tmp_path, text))
        assert err.field == "config.listeners"
        assert err.line == line_of(text, "<listeners>")
        assert err.message.startswith(f"<listeners> opened on line {err.line} is not closed")

    def test_mismatched_closing_tag_names_the_unclosed_element(
            self, tmp_path: Path, gateway_text: str) -> None:
        text = replace_once(gateway_text, "</interface>", "")
        err = load_error(write_config(tmp_path, text))
        assert err.field == "config.interfaces.interface"
        assert err.line == line_of(text, "<interface>")
        assert err.message.endswith(
            f"(mismatched tag on line {line_of(text, '</interfaces>')})")

    def test_entity_declaration_is_refused_with_its_line(self, tmp_path: Path) -> None:
        text = ('<?xml version="1.0"?>\n<!DOCTYPE config [\n'
                '  <!ENTITY big "xxxxxxxxxx">\n]>\n<config>&big;</config>\n')
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field == "xml"
        assert err.message == "a DOCTYPE ('config') is refused: a configuration has no DTD"
        assert_located(err, path, 2)

    def test_external_reference_is_refused(self, tmp_path: Path) -> None:
        text = ('<?xml version="1.0"?>\n\n<!DOCTYPE config SYSTEM "file:///etc/passwd">\n'
                '<config/>\n')
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.line == 3 and "DOCTYPE" in err.message

    def test_syntax_error_line_is_inside_the_file(self, tmp_path: Path) -> None:
        path = write_config(tmp_path, "<config>\n<system>\n")
        err = load_error(path)
        assert err.line == 2 and err.field == "config.system"

    def test_empty_file(self, tmp_path: Path) -> None:
        err = load_error(write_config(tmp_path, ""))
        assert err.field == "xml" and err.message == "empty document (no element)"
        assert err.line == 1


class TestLimits:
    @pytest.mark.timeout(120)
    def test_100000_siblings_are_refused(self, tmp_path: Path, gateway_text: str) -> None:
        """100,000 siblings took 265 s to check (the walk was quadratic): now refused."""
        urls = "<url>a.example</url>" * 100_000
        text = replace_once(gateway_text, "<url>", urls + "<url>")
        err = load_error(write_config(tmp_path, text))
        assert err.field == "xml"
        assert err.message == f"more than {xmltree.MAX_ELEMENTS} elements: refused"

    def test_siblings_are_looked_up_through_an_index(self) -> None:
        """Each lookup costs the same with 40,000 siblings: the children are indexed once,
        and the parser never scans a parent's children (which made it quadratic)."""
        data = b"<config><s>" + b"<url>a</url>" * 40_000 + b"<one>1</one></s></config>"
        root = xmltree.parse_xml(data, path="f.xml")
        section = root.require("s")
        assert section._indexed == 0         # the parser built no index: it counts by tag
        for _ in range(1000):
            assert section.first("one") is not None
        assert section._indexed == 40_001    # built once, on the first lookup
        assert len(section.all("url")) == 40_000
        assert section.children[-2].path == "config.s.url[40000]"

    @pytest.mark.timeout(120)
    def test_deep_nesting_is_refused(self, tmp_path: Path) -> None:
        """50,000 nested elements used 2.5 GB: the depth is limited."""
        text = "<config>" + "<a>" * 50_000 + "</a>" * 50_000 + "</config>"
        path = write_config(tmp_path, text)
        err = load_error(path)
        assert err.field == "xml"
        assert err.message.startswith(f"elements nested more than {xmltree.MAX_DEPTH} deep: "
                                      "refused (<a> in config.a.a.a")
        assert_located(err, path, 1)

    def test_oversized_file_is_refused_unread(self, tmp_path: Path) -> None:
        path = write_config(tmp_path, "")
        with path.open("wb") as f:
            f.write(b"<config>")
            f.seek(xmltree.MAX_BYTES + 10)
            f.write(b"</config>")
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert info.value.message == (f"the file is larger than {xmltree.MAX_BYTES} bytes: "
                                      "refused")


SECTIONS = [(model.Listener, "<listener>"), (model.PvoSettings, "<pvo_quarantines>"),
            (model.GatewayRecord, "<gateway>"), (model.SshSettings, "<ssh>"),
            (model.Route, "<route>"), (model.DeliverySettings, "<delivery>"),
            (model.AntivirusSettings, "<antivirus>"),
            (model.OutbreakSettings, "<outbreak_filters>"),
            (model.ScanSettings, "<scan_pipeline>"),
            (model.QuarantineDefinition, "<quarantine>"),
            (model.QuarantineStoreSettings, "<quarantine_store>"), (model.ApiSettings, "<api>"),
            (model.LogSubscriptionSettings, "<log_subscription>")]


LABELS = {(model.Route, "port"): "the port of `destination`",
          (model.QuarantineDefinition, "retention_seconds"):
              "`retention` (times `retention_unit`, in seconds)"}


def readme_rows() -> list[str]:
    """The README's table of ranges, one row per section, as the model declares them."""
    from pvoq.config.convert import show_number
    rows = []
    for owner, section in SECTIONS:
        ranges = []
        for f in dataclasses.fields(owner):
            bounds = value_range(owner, f.name)
            if bounds is None:
                continue
            label = LABELS.get((owner, f.name),
                               f"`{model.xml_tag(owner, f.name).split('/')[-1]}`")
            low, high = (show_number(b) for b in bounds)
            ranges.append(f"{label} {low}–{high}")
        rows.append(f"| `{section}` | {', '.join(ranges)} |")
    return rows


def test_the_readme_lists_every_range() -> None:
    """The ranges are documented where the configuration is: the README's table."""
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    missing = [row for row in readme_rows() if row not in readme.splitlines()]
    assert missing == [], "\n".join(missing)
