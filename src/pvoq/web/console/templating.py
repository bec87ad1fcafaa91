"""Rendering pages: one Jinja2 environment, autoescape on for every template.

`render(request, "x.html", **values)` gives an `HTMLResponse`; every template
sees `request`, `user` (or None), `ctx`, `nav` (the navigation for the user's
role), `csrf_field()` and `may(permission)`. Templates extend `base.html`
(blocks `title` and `content`). Mail-derived strings need nothing special:
autoescape escapes them; never mark them `|safe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pvoq.web.console.auth import User, optional_user
from pvoq.web.console.csrf import field_html

ENV = Environment(loader=PackageLoader("pvoq.web.console", "templates"),
                  autoescape=select_autoescape(default=True, default_for_string=True),
                  undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class NavItem:
    """One navigation entry: a menu (`section`) and a page in it."""

    section: str
    label: str
    href: str
    roles: tuple[str, ...] = ("manager", "gateway")
    permission: str | None = None


NAV: list[NavItem] = [
    NavItem("Monitor", "Delivery Status", "/monitor/delivery"),
    NavItem("Security Services", "PVO Quarantines", "/services/pvo", roles=("gateway",)),
    NavItem("Security Services", "Message Filters and Outbreak Rules", "/services/pipeline",
            roles=("gateway",)),
    NavItem("Network", "Listeners", "/network/listeners"),
]


def add_nav(item: NavItem) -> None:
    """Register a navigation entry (a page area does it at import time)."""
    if all(n.href != item.href for n in NAV):
        NAV.append(item)


def nav_for(role: str, user: User | None) -> dict[str, list[NavItem]]:
    sections: dict[str, list[NavItem]] = {}
    if user is None:
        return sections
    for item in NAV:
        if role in item.roles and (item.permission is None or user.may(item.permission)):
            sections.setdefault(item.section, []).append(item)
    return sections


def render(request: Request, name: str, *, status_code: int = 200,
           **values: Any) -> HTMLResponse:
    ctx = request.app.state.ctx
    user = values.pop("user", None) or optional_user(request)
    html = ENV.get_template(name).render(
        request=request, ctx=ctx, user=user, nav=nav_for(ctx.role, user),
        csrf_field=lambda: field_html(request),
        may=(lambda p: user is not None and user.may(p)), **values)
    return HTMLResponse(html, status_code=status_code)
