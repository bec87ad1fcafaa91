"""`<logs>`: each log's rollover, retention, level and syslog push, read from the file.

    <logs>
      <log>
        <name>mail_logs</name>
        <level>Info</level>                          <!-- Critical, Warning, Info, Debug -->
        <max_file_size>10M</max_file_size>           <!-- bytes, or with K, M, G -->
        <rollover_interval_seconds>86400</rollover_interval_seconds>  <!-- 0: none -->
        <max_files>10</max_files>                    <!-- rolled files kept -->
        <syslog>
          <host>10.0.0.5</host> <port>514</port> <protocol>tcp</protocol>
          <facility>mail</facility> <buffer_lines>10000</buffer_lines>
        </syslog>
      </log>
    </logs>

The values are `maillog.settings` classes. `logconfig edit` writes a new
`<logs>` section into the file (`replace_section`) and reloads it.
"""

from __future__ import annotations

import re

from pvoq.config import convert
from pvoq.config.errors import ConfigError
from pvoq.config.xmltree import Node
from pvoq.maillog.settings import (
    BUFFER_RANGE,
    FACILITIES,
    FILES_RANGE,
    INTERVAL_RANGE,
    LEVELS,
    LOG_NAMES,
    SIZE_RANGE,
    SYSLOG_PROTOCOLS,
    LogsConfig,
    LogSettings,
    SyslogTarget,
)

_SIZE = re.compile(r"(\d{1,15})\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def size(raw: str) -> int:
    """A file size: bytes, or a number with K, M, G or T (powers of 1024): `10M`, `500K`."""
    found = _SIZE.fullmatch(raw.strip())
    if found is None:
        raise ValueError("not a size (bytes, or a number with K, M, G or T)")
    return int(found.group(1)) * _UNITS[found.group(2).upper()]


def show_size(number: int) -> str:
    """*number* of bytes the way `size` reads it back, in the largest exact unit."""
    for unit in ("T", "G", "M", "K"):
        if number % _UNITS[unit] == 0:
            return f"{number // _UNITS[unit]}{unit}"
    return str(number)


def interval(raw: str) -> float:
    """A rollover interval in seconds; 0 or `none`: no rollover by time."""
    if raw.strip().lower() == "none":
        return 0.0
    return convert.non_negative(raw)


def parse_logs(root: Node) -> LogsConfig:
    """The `<logs>` section of *root* (the defaults when it is absent)."""
    section = root.first("logs")
    if section is None:
        return LogsConfig()
    found: dict[str, LogSettings] = {}
    for node in section.all("log"):
        settings = _log(node)
        if settings.name in found:
            raise ConfigError(f"log {settings.name!r} is configured twice",
                              field=f"{node.path}.name", line=node.line)
        found[settings.name] = settings
    return LogsConfig(tuple(found.values()))


def _log(node: Node) -> LogSettings:
    name = convert.value(node, "name", convert.choice(*LOG_NAMES), required=True)
    defaults = LogSettings(name=name)
    syslog_node = node.first("syslog")
    return LogSettings(
        name=name,
        level=convert.value(node, "level", convert.choice(*LEVELS), defaults.level),
        max_file_size=convert.value(node, "max_file_size", size, defaults.max_file_size,
                                    bounds=SIZE_RANGE),
        rollover_interval_seconds=convert.value(
            node, "rollover_interval_seconds", interval, defaults.rollover_interval_seconds,
            bounds=INTERVAL_RANGE),
        max_files=convert.value(node, "max_files", convert.positive_int, defaults.max_files,
                                bounds=FILES_RANGE),
        syslog=None if syslog_node is None else _syslog(syslog_node),
    )


def _syslog(node: Node) -> SyslogTarget:
    defaults = SyslogTarget(host="-")
    return SyslogTarget(
        host=convert.value(node, "host", convert.host, required=True),
        port=convert.value(node, "port", convert.port, defaults.port),
        protocol=convert.value(node, "protocol", convert.choice(*SYSLOG_PROTOCOLS),
                               defaults.protocol),
        facility=convert.value(node, "facility", convert.choice(*FACILITIES),
                               defaults.facility),
        buffer_lines=convert.value(node, "buffer_lines", convert.positive_int,
                                   defaults.buffer_lines, bounds=BUFFER_RANGE),
    )


_SECTION = re.compile(r"[ \t]*<logs\s*(?:/>|>.*?</logs\s*>)", re.DOTALL)


def replace_section(text: str, section: str) -> str:
    """The configuration file *text* with its `<logs>` section replaced by *section* (or added
    before `</config>`); a file with several `<logs>` (a cluster's levels) is refused."""
    found = list(_SECTION.finditer(text))
    if len(found) > 1:
        raise ConfigError("the file has several <logs> sections (cluster levels): edit it "
                          "by hand", field="logs")
    if found:
        return text[:found[0].start()] + section + text[found[0].end():]
    end = text.rfind("</config>")
    if end < 0:
        raise ConfigError("no </config> in the file", field="config")
    return text[:end] + section + "\n" + text[end:]
