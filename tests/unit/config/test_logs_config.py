"""Tests for `<logs>` (pvoq.config.logs): values, defaults, errors naming the element, and the
section rewrite `logconfig edit` uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvoq.config.errors import ConfigError
from pvoq.config.loader import load_config
from pvoq.config.logs import replace_section, show_size, size
from pvoq.maillog.settings import LogsConfig, LogSettings, SyslogTarget

MINIMAL = """\
<?xml version="1.0" encoding="UTF-8"?>
<config>
  <system>
    <role>gateway</role>
    <hostname>gw1.example.com</hostname>
    <serial_number>GW1-SN</serial_number>
    <data_dir>data</data_dir>
  </system>
  <interfaces>
    <interface><interface_name>Incoming Mail</interface_name><ip>10.1.2.1</ip></interface>
  </interfaces>
  <pvo_quarantines><manager_address>10.1.2.3</manager_address></pvo_quarantines>
  <cpq_certificate>
    <ca_certificate>cpq-ca.pem</ca_certificate>
    <certificate>cpq.pem</certificate>
    <private_key>cpq.key</private_key>
  </cpq_certificate>
{extra}</config>
"""


def load(directory: Path, extra: str = "") -> LogsConfig:
    for name in ("cpq-ca.pem", "cpq.pem", "cpq.key"):
        (directory / name).touch()
    path = directory / "pvoq.xml"
    path.write_text(MINIMAL.format(extra=extra), encoding="utf-8")
    return load_config(path).logs


def test_left_out_gives_the_defaults(tmp_path: Path) -> None:
    logs = load(tmp_path)
    assert logs == LogsConfig()
    assert logs.get("mail_logs") == LogSettings()
    assert LogSettings().max_file_size == 10 * 1024 * 1024 and LogSettings().max_files == 10


def test_a_written_log_with_only_its_name_has_the_defaults(tmp_path: Path) -> None:
    logs = load(tmp_path, "  <logs><log><name>mail_logs</name></log></logs>\n")
    assert logs.get("mail_logs") == LogSettings()


def test_every_value(tmp_path: Path) -> None:
    logs = load(tmp_path, """\
  <logs>
    <log>
      <name>mail_logs</name>
      <level>debug</level>
      <max_file_size>5M</max_file_size>
      <rollover_interval_seconds>86400</rollover_interval_seconds>
      <max_files>30</max_files>
      <syslog><host>127.0.0.1</host><port>6514</port><protocol>TCP</protocol>
        <facility>local5</facility><buffer_lines>500</buffer_lines></syslog>
    </log>
  </logs>
""")
    assert logs.get("mail_logs") == LogSettings(
        level="Debug", max_file_size=5 * 1024 * 1024, rollover_interval_seconds=86400.0,
        max_files=30, syslog=SyslogTarget("127.0.0.1", 6514, "tcp", "local5", 500))


def test_syslog_defaults(tmp_path: Path) -> None:
    logs = load(tmp_path, "  <logs><log><name>mail_logs</name><syslog><host>logs.example.com"
                          "</host></syslog></log></logs>\n")
    assert logs.get("mail_logs").syslog == SyslogTarget("logs.example.com", 514, "udp", "mail")


@pytest.mark.parametrize(("inner", "field", "why"), [
    ("<max_file_size>10X</max_file_size>", "max_file_size", "not a size"),
    ("<max_file_size>12</max_file_size>", "max_file_size", "from 1024 to"),
    ("<max_files>0</max_files>", "max_files", "not a positive integer"),
    ("<rollover_interval_seconds>-1</rollover_interval_seconds>",
     "rollover_interval_seconds", "not a non-negative number"),
    ("<level>Chatty</level>", "level", "must be one of Critical, Warning, Info, Debug"),
    ("<syslog><port>514</port></syslog>", "syslog.host", "missing <host>"),
    ("<syslog><host>h</host><protocol>sctp</protocol></syslog>", "syslog.protocol", "tcp, udp"),
    ("<syslog><host>h</host><facility>mali</facility></syslog>", "syslog.facility", "local7"),
    ("<syslog><host>h</host><port>0</port></syslog>", "syslog.port", "not a port number"),
    ("<colour>red</colour>", "colour", "unknown element <colour>"),
])
def test_bad_values_name_the_element(tmp_path: Path, inner: str, field: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"  <logs><log><name>mail_logs</name>{inner}</log></logs>\n")
    assert info.value.field == f"config.logs.log.{field}"
    assert why in info.value.message


def test_an_unknown_log_and_a_log_twice_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "  <logs><log><name>ftpd_logs</name></log></logs>\n")
    assert info.value.field == "config.logs.log.name"
    twice = "<log><name>mail_logs</name></log>"
    with pytest.raises(ConfigError, match="configured twice"):
        load(tmp_path, f"  <logs>{twice}{twice}</logs>\n")


def test_sizes() -> None:
    assert size("10M") == 10 * 1024**2 and size("500k") == 500 * 1024 and size("2048") == 2048
    assert size("1GiB") == 1024**3
    for bad in ("", "M", "1.5M", "-1", "10 X"):
        with pytest.raises(ValueError, match="not a size"):
            size(bad)
    assert [show_size(n) for n in (10 * 1024**2, 1536, 1000, 1024**4)] == [
        "10M", "1536", "1000", "1T"]


class TestReplaceSection:
    def test_replaces_the_section_and_keeps_the_rest(self) -> None:
        text = "<config>\n  <!-- mine -->\n  <logs><log/></logs>\n  <ssh/>\n</config>\n"
        assert replace_section(text, "  <logs>NEW</logs>") == (
            "<config>\n  <!-- mine -->\n  <logs>NEW</logs>\n  <ssh/>\n</config>\n")

    def test_adds_the_section_before_the_end(self) -> None:
        assert replace_section("<config>\n  <ssh/>\n</config>\n", "  <logs/>") == (
            "<config>\n  <ssh/>\n  <logs/>\n</config>\n")

    def test_an_empty_element_is_replaced(self) -> None:
        assert replace_section("<config><logs/></config>", "<logs>x</logs>") == (
            "<config><logs>x</logs></config>")

    def test_several_sections_are_refused(self) -> None:
        with pytest.raises(ConfigError, match="several <logs>"):
            replace_section("<config><logs/><cluster><logs/></cluster></config>", "<logs/>")


def test_the_readme_lists_the_ranges() -> None:
    """The README's range table has the bounds the loader applies."""
    from pvoq.config.convert import show_number
    from pvoq.maillog.settings import BUFFER_RANGE, FILES_RANGE, INTERVAL_RANGE, SIZE_RANGE

    def span(bounds: tuple[float, float]) -> str:
        return f"{show_number(bounds[0])}–{show_number(bounds[1])}"

    row = (f"| `<log>` (in `<logs>`) | `max_file_size` {span(SIZE_RANGE)} (bytes, or with K, M, "
           f"G, T), `rollover_interval_seconds` {span(INTERVAL_RANGE)} (0: none), `max_files` "
           f"{span(FILES_RANGE)}, and in `<syslog>` `port` 1–65535, `buffer_lines` "
           f"{span(BUFFER_RANGE)} |")
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    assert row in readme.splitlines()
