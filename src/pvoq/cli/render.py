"""How `pvoq cli` renders what several of its command modules print: ages, times, reasons,
and every string that came in with mail, made harmless for the terminal (`safe`, `echo`,
`rich_text`).

A subject, a sender, a file name, a reason, a header or a log line is hostile: it may
carry ESC sequences (clear the screen, retitle the terminal, hide a hyperlink), C1
controls (`\x9b` is a one-byte CSI on some terminals), bidi overrides that reorder what
is shown, or rich markup (`[/bold]`, `[link=...]`). `safe()` is the one function that
neutralises them; `echo()` prints a line through it and `rich_text()` makes a rich
table cell of it (never parsed as markup). JSON output (`--json`) is printed as JSON,
whose escaping is exact and enough.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from pvoq.maillog.writer import format_time

if TYPE_CHECKING:
    from rich.text import Text

# C0 controls, DEL and C1 controls: shown as `\xNN`.
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
# Bidi embeddings, overrides, isolates and marks, and the Unicode line separators:
# shown as `\uNNNN`, so that nothing after them is reordered or moved to a new line.
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A),
         0x2028, 0x2029]
_ONE_LINE = str.maketrans({**{c: f"\\x{c:02x}" for c in _CONTROLS},
                           **{c: f"\\u{c:04x}" for c in _BIDI}})
_MULTILINE = str.maketrans({**{c: f"\\x{c:02x}" for c in _CONTROLS if c not in (0x09, 0x0A)},
                            **{c: f"\\u{c:04x}" for c in _BIDI}})


def safe(text: object, *, multiline: bool = False) -> str:
    """*text* as it may be shown in a terminal: every control character (C0, DEL, C1, ESC
    among them) and every bidi control shown visibly as `\\x1b`, `\\u202e`; a line break
    too unless *multiline* (then `\\n` and tab stay, and CRLF becomes `\\n`)."""
    text = str(text)
    if multiline:
        return text.replace("\r\n", "\n").translate(_MULTILINE)
    return text.translate(_ONE_LINE)


def echo(text: object, *, err: bool = False, multiline: bool = False) -> None:
    """Print *text* (a line holding mail-derived strings) made `safe`."""
    click.echo(safe(text, multiline=multiline), err=err)


def rich_text(text: object) -> Text:
    """*text* as a rich cell or title: made `safe`, and never parsed as markup."""
    from rich.text import Text  # here: an appliance process never loads rich

    return Text(safe(text))


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


_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def duration(seconds: float) -> str:
    """A length of time as a person says it: `30 days`, `36 hours`, `1 minute`, `90 seconds`.

    The largest unit that divides it exactly (seconds only under an hour); failing
    that (a retention given as `0.0166667` hours), the largest unit it reaches, to
    three significant digits (`1.5 days`; whole units from 1,000 on).
    """
    seconds = float(seconds)
    for name, size in _UNITS:
        if seconds >= size and seconds % size == 0 and (size > 1 or seconds < 3600):
            return _count(seconds / size, name)
    for name, size in _UNITS:
        if seconds >= size:
            value = seconds / size
            return _count(float(f"{value:.3g}") if value < 1000 else round(value), name)
    return _count(seconds, "second")


def _count(value: float, unit: str) -> str:
    text = f"{value:,.0f}" if value >= 1000 else f"{value:g}"
    return f"{text} {unit}" if value == 1 else f"{text} {unit}s"


def columns(rows: list[list[str]], gap: int = 2) -> list[str]:
    """*rows* (the first one the header) as lines of left-aligned columns, each as wide
    as its widest cell plus *gap* spaces: no two cells ever run together."""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(map(len, rows)))]
    return ["".join(cell if i == len(r) - 1 else cell.ljust(widths[i] + gap)
                    for i, cell in enumerate(r)) for r in rows]


def cell(text: object, width: int) -> str:
    """*text* left-aligned in a fixed column of *width*, always followed by a space: a
    longer value (a host or sender name) pushes the line on, never into the next column."""
    return f"{text!s:<{width - 1}} "
