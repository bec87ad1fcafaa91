"""The settings of each log (`<logs>` in the configuration, `logconfig` on the CLI).

Plain values with their defaults, read by `config.logs` from the file and
used by `maillog.writer` (rollover, retention, level) and `maillog.syslog`
(the push to a syslog server). AsyncOS's terms: a log rolls over when it
reaches its maximum file size or when its rollover interval has passed since
its first line, and keeps `max_files` rolled files (the oldest are deleted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

LEVELS = ("Critical", "Warning", "Info", "Debug")
"""The AsyncOS levels a line carries, most severe first; a log keeps those up to its level."""
LOG_NAMES = ("mail_logs",)
"""The logs an appliance writes (each `<data>/logs/<name>`)."""
SEVERITY = {"Critical": 2, "Warning": 4, "Info": 6, "Debug": 7}
"""RFC 5424 severity of each level (crit, warning, informational, debug)."""
FACILITIES: Mapping[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{n}": 16 + n for n in range(8)},
}
"""RFC 5424 facility codes by name."""
SYSLOG_PROTOCOLS = ("tcp", "udp")

SIZE_RANGE = (1024, 2**40)
"""`max_file_size`: 1 KiB to 1 TiB."""
INTERVAL_RANGE = (0.0, 366 * 86400.0)
"""`rollover_interval_seconds`: 0 (no rollover by time) to a year."""
FILES_RANGE = (1, 100_000)
BUFFER_RANGE = (1, 10_000_000)


@dataclass(frozen=True)
class SyslogTarget:
    """`<syslog>` of a log: push each line to a syslog server (RFC 5424)."""

    host: str
    port: int = 514
    protocol: str = "udp"                 # tcp (octet counting, RFC 6587) | udp (RFC 5426)
    facility: str = "mail"
    buffer_lines: int = 10_000            # lines waiting for the server; more are dropped

    def describe(self) -> str:
        return f"{self.protocol}://{self.host}:{self.port} facility {self.facility}"


@dataclass(frozen=True)
class LogSettings:
    """`<log>`: one log's rollover, retention, level and syslog push."""

    name: str = "mail_logs"
    level: str = "Info"
    max_file_size: int = 10 * 1024 * 1024     # bytes; the file rolls over when it reaches this
    rollover_interval_seconds: float = 0.0    # 0: no rollover by time
    max_files: int = 10                       # rolled files kept; the oldest are deleted
    syslog: SyslogTarget | None = None

    def keeps(self, level: str) -> bool:
        """Whether a line of *level* is written at this log's level."""
        return LEVELS.index(level) <= LEVELS.index(self.level)


@dataclass(frozen=True)
class LogsConfig:
    """`<logs>`: the settings of every log; a log not written has the defaults."""

    logs: tuple[LogSettings, ...] = field(default=())

    def get(self, name: str) -> LogSettings:
        for settings in self.logs:
            if settings.name == name:
                return settings
        return LogSettings(name=name)

    def all(self) -> tuple[LogSettings, ...]:
        """Every log's settings, written or default, in `LOG_NAMES` order."""
        return tuple(self.get(name) for name in LOG_NAMES)
