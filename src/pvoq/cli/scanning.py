"""`pvoq cli -c FILE pipeline|outbreak`: the gateway's scanning pipeline and outbreak rules."""

from __future__ import annotations

import click

from pvoq.cli.client import print_json, request
from pvoq.cli.render import cell


@click.group()
def pipeline() -> None:
    """The gateway's scanning pipeline."""


@pipeline.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def pipeline_show(ctx: click.Context, as_json: bool) -> None:
    """The stages in the order they run, and where a release from each resumes."""
    data = request(ctx, "pipeline.show")["data"]
    if print_json(as_json, data):
        return
    click.echo(f"Scanning pipeline of {data['hostname']} (stages run in this order):")
    click.echo(f"{'#':<3}{'Stage':<18}{'PVO':<5}{'Quarantine':<12}{'Timeout':<9}Engine / rules")
    for s in data["stages"]:
        timeout = f"{s['timeout_s']:g}s" if s["timeout_s"] else "-"
        click.echo(f"{cell(s['n'], 3)}{cell(s['stage'], 18)}{cell(s['pvo'], 5)}"
                   f"{cell(s['quarantine'], 12)}{cell(timeout, 9)}{s['engine']}")
    click.echo("")
    click.echo("A message released from a quarantine re-enters the pipeline:")
    for s in data["stages"]:
        if s["release_runs"]:
            click.echo(f"  released from {s['stage']:<17} runs: {' -> '.join(s['release_runs'])}")
    click.echo("A check that errs or times out is a temporary failure: the message stays "
               "queued and is scanned again.")


@click.group()
def outbreak() -> None:
    """Outbreak filter rules and the gateway's copies of outbreak-quarantined mail."""


@outbreak.command("reload")
@click.pass_context
def outbreak_reload(ctx: click.Context) -> None:
    """Re-read the rules file now; if it changed, rescan the kept copies."""
    click.echo(request(ctx, "outbreak.reload")["text"])


@outbreak.command("rescan")
@click.pass_context
def outbreak_rescan(ctx: click.Context) -> None:
    """Rescan every kept copy against the rules in force and tell the manager."""
    click.echo(request(ctx, "outbreak.rescan")["text"])


def register(cli: click.Group) -> None:
    """Add this module's commands to the `pvoq cli` group."""
    for cmd in (pipeline, outbreak):
        cli.add_command(cmd)
