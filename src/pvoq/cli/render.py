"""How `pvoq cli` renders what several of its command modules print: ages, times, reasons."""

from __future__ import annotations

import time
from typing import Any

from pvoq.maillog.writer import format_time


def age(seconds: float) -> str:
    """A duration as `1d 2h 3m 4s` (zero parts left out; seconds always shown)."""
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "",
             f"{minutes}m" if minutes else "", f"{secs}s"]
    return " ".join(p for p in parts if p)


def when(epoch: float | None) -> str:
    """A moment as its mail_logs time and how long ago it was; `Never` if there was none."""
    return "Never" if not epoch else f"{format_time(epoch)} ({age(time.time() - epoch)} ago)"


def reasons(quarantines: list[dict[str, Any]]) -> str:
    """The quarantines a message is held in, with why: `Virus: Eicar; Policy: ...`."""
    return "; ".join(f"{q['quarantine']}: {q['reason']}" for q in quarantines
                     if q["state"] == "held")
