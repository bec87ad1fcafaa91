"""`pvoq cli -c MANAGER pvo migrate`: the migration wizard (the manager's `pvo.migrate`).

Plans the move of the gateways' local quarantines into the central ones,
prints the plan as a tree, and unless `--dry-run` applies it; `--status`
shows the progress of the migration under way (`pvo.migrate.status`), and
`--cancel` stops it (`pvo.migrate.cancel`).
"""

from __future__ import annotations

import click

from pvoq.cli.client import print_json, request
from pvoq.cli.render import echo


@click.command("migrate")
@click.option("--mode", type=click.Choice(["automatic", "custom"]),
              help="automatic: merge by name; custom: as the --map options say")
@click.option("--map", "maps", multiple=True, metavar="LOCAL@GATEWAY=CENTRAL|new",
              help="custom mode: where a gateway's local quarantine goes (repeatable)")
@click.option("--dry-run", is_flag=True, help="print the plan and stop")
@click.option("--notify", metavar="ADDRESS", help="mail this address when it is completed")
@click.option("--status", "show_status", is_flag=True, help="the progress of the migration")
@click.option("--cancel", is_flag=True,
              help="stop the migration under way; what is not moved stays on the gateways")
@click.option("--json", "as_json", is_flag=True, help="print the data as JSON")
@click.pass_context
def pvo_migrate(ctx: click.Context, mode: str | None, maps: tuple[str, ...], dry_run: bool,
                notify: str | None, show_status: bool, cancel: bool, as_json: bool) -> None:
    """Move the gateways' local quarantines to this manager (the migration wizard)."""
    if show_status and cancel:
        raise click.UsageError("--status and --cancel cannot be used together")
    if show_status:
        result = request(ctx, "pvo.migrate.status")
    elif cancel:
        result = request(ctx, "pvo.migrate.cancel")
    else:
        if mode is None:
            raise click.UsageError("--mode automatic|custom is required (or --status)")
        result = request(ctx, "pvo.migrate", {"mode": mode, "maps": list(maps),
                                              "dry_run": dry_run, "notify": notify})
    if not print_json(as_json, result.get("data")):
        echo(result["text"], multiline=True)


def register(pvo: click.Group) -> None:
    """Add `migrate` to the `pvo` group."""
    pvo.add_command(pvo_migrate)
