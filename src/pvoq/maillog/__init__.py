"""mail_logs in AsyncOS form, and the persistent ID counters (ICID, MID, DCID).

The names are loaded on first use: `pvoq.maillog.settings` (which the
configuration model imports, in the scanner process too) does not bring the
writer's modules with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pvoq.maillog.ids import IdAllocator
    from pvoq.maillog.writer import MailLog, format_line

__all__ = ["IdAllocator", "MailLog", "format_line"]
_WHERE = {"IdAllocator": "pvoq.maillog.ids", "MailLog": "pvoq.maillog.writer",
          "format_line": "pvoq.maillog.writer"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
