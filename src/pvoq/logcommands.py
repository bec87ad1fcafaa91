"""`logconfig` and `rollovernow`: the operator commands over the appliance's logs.

`logconfig` shows each log's settings (`<logs>`: level, rollover by size and
time, files kept, syslog push) with its files and the state of its syslog
push; `logconfig.edit` changes a log's settings in the configuration file
(its `<logs>` section is rewritten, the rest of the file is kept byte for
byte) and applies them with `reload`: a value the loader refuses restores the
file and answers the loader's error, naming the element and its line.
`rollovernow` rolls a log over at once (AsyncOS's command of that name).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from html import escape
from typing import Any

from pvoq.admin.protocol import CommandError
from pvoq.admin.registry import CommandSet, command
from pvoq.config.convert import show_number
from pvoq.config.errors import ConfigError
from pvoq.config.logs import replace_section, show_size
from pvoq.config.model import Config
from pvoq.fsutil import atomic_write
from pvoq.maillog.rollover import rolled_files
from pvoq.maillog.settings import LOG_NAMES, LogSettings
from pvoq.maillog.writer import MailLog

EDITABLE = ("level", "max_file_size", "rollover_interval_seconds", "max_files")
SYSLOG_FIELDS = ("host", "port", "protocol", "facility", "buffer_lines")


def _fields(settings: LogSettings) -> dict[str, Any]:
    syslog = settings.syslog
    return {
        "name": settings.name, "level": settings.level,
        "max_file_size": settings.max_file_size,
        "rollover_interval_seconds": settings.rollover_interval_seconds,
        "max_files": settings.max_files,
        "syslog": None if syslog is None else {
            "host": syslog.host, "port": syslog.port, "protocol": syslog.protocol,
            "facility": syslog.facility, "buffer_lines": syslog.buffer_lines},
    }


def _element(name: str, values: Mapping[str, str], syslog: Mapping[str, str] | None) -> str:
    """A `<log>` element with *values* as they were given (the loader checks them)."""
    inner = "".join(f"<{k}>{escape(values[k])}</{k}>" for k in EDITABLE if k in values)
    if syslog is not None:
        inner += "<syslog>" + "".join(f"<{k}>{escape(syslog[k])}</{k}>"
                                      for k in SYSLOG_FIELDS if k in syslog) + "</syslog>"
    return f"    <log><name>{name}</name>{inner}</log>"


class LogCommands(CommandSet):
    """The log commands over *logs* (name → writer), the running configuration and *reload*."""

    def __init__(self, logs: Mapping[str, MailLog], config: Callable[[], Config],
                 reload: Callable[[], Awaitable[str]]) -> None:
        self.logs = logs
        self.config = config
        self.reload_config = reload

    def _log(self, name: str) -> MailLog:
        if name not in self.logs:
            raise CommandError(f"log: unknown log {name!r} (logs: {', '.join(self.logs)})")
        return self.logs[name]

    @command("logconfig")
    async def show(self, args: dict[str, Any]) -> dict[str, Any]:
        found = []
        for settings in self.config().logs.all():
            entry = _fields(settings)
            writer = self.logs.get(settings.name)
            if writer is not None:
                files = rolled_files(writer.directory, settings.name)
                entry.update(path=str(writer.path), size=_size(writer.path),
                             rolled_files=[p.name for p in files],
                             syslog_state=writer.syslog_state())
            found.append(entry)
        return {"data": {"logs": found}}

    @command("logconfig.edit")
    async def edit(self, args: dict[str, Any]) -> dict[str, Any]:
        """Args: `log`; any of `level`, `max_file_size`, `rollover_interval_seconds`,
        `max_files` (strings, as in the file); `syslog`: {host, port, protocol, facility,
        buffer_lines} to push (merged with the current target), or null to stop."""
        name = str(args.get("log", "mail_logs"))
        if name not in LOG_NAMES:
            raise CommandError(f"log: unknown log {name!r} (logs: {', '.join(LOG_NAMES)})")
        config = self.config()
        elements = []
        for settings in config.logs.all():
            current = _fields(settings)
            values = {k: _text(k, current[k]) for k in EDITABLE}
            syslog = current["syslog"]
            syslog_values = None if syslog is None else {k: str(v) for k, v in syslog.items()}
            if settings.name == name:
                for key in EDITABLE:
                    if args.get(key) is not None:
                        values[key] = str(args[key])
                if "syslog" in args:
                    given = args["syslog"]
                    if given is None:
                        syslog_values = None
                    elif isinstance(given, dict):
                        syslog_values = {**(syslog_values or {}),
                                         **{k: str(v) for k, v in given.items()
                                            if k in SYSLOG_FIELDS and v is not None}}
                    else:
                        raise CommandError("syslog: expected host, port, protocol, facility")
            elements.append(_element(settings.name, values, syslog_values))
        section = "  <logs>\n" + "\n".join(elements) + "\n  </logs>"
        path = config.path
        old = path.read_bytes()
        try:
            new = replace_section(old.decode("utf-8"), section)
        except UnicodeDecodeError as exc:
            raise CommandError(f"logs: cannot edit {path}: {exc}") from None
        except ConfigError as exc:
            raise CommandError(f"logs: cannot edit {path}: {exc.message}") from None
        atomic_write(path, new.encode("utf-8"), mode=_mode(path))
        try:
            said = await self.reload_config()
        except CommandError:
            atomic_write(path, old, mode=_mode(path))
            raise
        return {"text": f"Log settings of {name} saved to {path}. {said}",
                "data": _fields(self.config().logs.get(name))}

    @command("rollovernow")
    async def rollovernow(self, args: dict[str, Any]) -> dict[str, Any]:
        """Args: `log` (a log's name, or `all`, the default)."""
        name = str(args.get("log") or "all")
        names = list(self.logs) if name == "all" else [self._log(name).name]
        said, rolled = [], {}
        for each in names:
            writer = self.logs[each]
            try:
                done = writer.rollover_now()
            except OSError as exc:
                raise CommandError(f"{each}: rollover failed: {exc}") from None
            rolled[each] = done
            said.append(f"{each} rolled over to {done}." if done else
                        f"{each} was moved away: a new file was begun.")
        return {"text": "\n".join(said), "data": {"rolled": rolled}}


def _text(key: str, value: Any) -> str:
    if key == "max_file_size":
        return show_size(int(value))
    if isinstance(value, float):
        return show_number(value)
    return str(value)


def _size(path: os.PathLike[str]) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _mode(path: os.PathLike[str]) -> int:
    """The configuration file's own mode, kept by the rewrite."""
    return os.stat(path).st_mode & 0o7777
