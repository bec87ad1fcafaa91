"""The one exception a bad configuration raises.

Every message names the file, the line and the field, so that an operator can
fix the file from one line of output (exit code 2).
"""

from __future__ import annotations

from pvoq.errors import Invalid


class ConfigError(Invalid):
    """A configuration value is missing, malformed or inconsistent."""

    def __init__(self, message: str, *, field: str, line: int | None = None,
                 path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.line = line
        self.path = path

    def located(self, *, path: str | None = None, line_offset: int = 0) -> ConfigError:
        """Return a copy placed in *path*, its line shifted by *line_offset*."""
        line = None if self.line is None else self.line + line_offset
        return ConfigError(self.message, field=self.field, line=line, path=path or self.path)

    def __str__(self) -> str:
        where = self.path or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.field}: {self.message}"
