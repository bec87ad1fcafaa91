"""`pvoq cli -c MANAGER quarantine add|edit|remove NAME`: custom quarantines, kept in the
configuration file.

Each is the manager's `quarantine.add|edit|remove` (`quarantine.definitions`):
the `<quarantine>` element is rewritten in the file, the file checked as
`config check` does, replaced atomically and reloaded, as the console's
PVO Quarantines page does. `edit` changes only the options given: it reads
the quarantine's current settings first and sends them back with the
changes, with the file's digest, so that a change made meanwhile is refused
rather than overwritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from pvoq.cli.client import request
from pvoq.cli.quarantine import quarantine

_OPTIONS: list[Callable[[Any], Any]] = [
    click.option("--retention", help="How long messages are kept (with --unit)."),
    click.option("--unit", "retention_unit", type=click.Choice(["minutes", "hours", "days"]),
                 help="The retention's unit (default days)."),
    click.option("--action", "default_action", type=click.Choice(["release", "delete"]),
                 help="The default action at the scheduled exit."),
    click.option("--free-up-space/--no-free-up-space", default=None,
                 help="Apply the default action on space overflow."),
    click.option("--subject-tag", help="Early release: tag added to the subject."),
    click.option("--subject-position", type=click.Choice(["prepend", "append"])),
    click.option("--x-header", help="Early release: header added, e.g. 'X-Early: True'."),
    click.option("--strip-attachments/--keep-attachments", default=None,
                 help="Early release: strip attachments."),
]


def _settings(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return fn


def _given(options: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


@click.command("add")
@click.argument("name")
@_settings
@click.pass_context
def quarantine_add(ctx: click.Context, name: str, **options: Any) -> None:
    """Create quarantine NAME in the configuration file and reload it."""
    click.echo(request(ctx, "quarantine.add", {"name": name, **_given(options)})["text"])


@click.command("edit")
@click.argument("name")
@_settings
@click.pass_context
def quarantine_edit(ctx: click.Context, name: str, **options: Any) -> None:
    """Change the given settings of quarantine NAME (the others stay) and reload."""
    data = request(ctx, "quarantine.definitions")["data"]
    current = next((q["form"] for q in data["quarantines"] if q["name"] == name), None)
    if current is None:
        raise click.ClickException(f"no quarantine {name!r}")
    args = {**current, **_given(options), "name": name, "version": data["version"]}
    click.echo(request(ctx, "quarantine.edit", args)["text"])


@click.command("remove")
@click.argument("name")
@click.pass_context
def quarantine_remove(ctx: click.Context, name: str) -> None:
    """Delete custom quarantine NAME (its messages get its default action) and reload."""
    click.echo(request(ctx, "quarantine.remove", {"name": name})["text"])


def register(cli: click.Group) -> None:
    """Add `add`, `edit` and `remove` to the `quarantine` group."""
    for command in (quarantine_add, quarantine_edit, quarantine_remove):
        quarantine.add_command(command)
