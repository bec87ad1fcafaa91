"""What the console's own page areas share: running an operator command for a page, and
bounded query values.

`run(request, user, name, args)` calls `ctx.call` and turns a refusal into
a value the page shows (`Outcome`), except a permission refusal, which is
the 403 page. `bounded_text` and `bounded_int` check a query value (400 with
the parameter's name, never a 500).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import HTTPException, Request

from pvoq.errors import Forbidden, OperatorError
from pvoq.web.console.auth import User


@dataclass
class Outcome:
    ok: bool
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    missing: bool = False      # the appliance has no such command


async def run(request: Request, user: User, name: str,
              args: dict[str, Any] | None = None) -> Outcome:
    """Command *name* as *user*; a `Forbidden` refusal propagates (the 403 page)."""
    try:
        result = await request.app.state.ctx.call(name, args or {}, user)
    except Forbidden:
        raise
    except OperatorError as exc:
        text = str(exc)
        return Outcome(False, text, missing=text == f"Unknown command: {name}")
    return Outcome(True, str(result.get("text") or ""), dict(result.get("data") or {}))


def bounded_text(value: str | None, name: str, *, max_length: int = 255) -> str | None:
    if value is None:
        return None
    if len(value) > max_length or any(ord(c) < 0x20 for c in value):
        raise HTTPException(400, f"{name}: at most {max_length} printable characters")
    return value


def bounded_int(value: str | None, name: str, *, low: int, high: int,
                default: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or len(value) > 12 or not low <= int(value) <= high:
        raise HTTPException(400, f"{name}: a whole number from {low} to {high}, "
                                 f"not {value[:40]!r}")
    return int(value)
