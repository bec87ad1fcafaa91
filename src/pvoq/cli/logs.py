"""`pvoq cli -c FILE grep|tail`: the mail log, read from the file itself (no running appliance needed)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from pvoq.cli.client import config
from pvoq.cli.render import echo


def _log_path(ctx: click.Context, name: str) -> Path:
    cfg = config(ctx)
    if name != "mail_logs":
        raise click.UsageError(f"unknown log {name!r} (this appliance writes mail_logs)")
    path = cfg.logs_dir / name
    if not path.exists():
        click.echo(f"pvoq: no {name} yet at {path}", err=True)
        sys.exit(1)
    return path


@click.command("grep")
@click.option("-e", "--regexp", "pattern", required=True, help="Regular expression.")
@click.option("-i", "ignore_case", is_flag=True, help="Ignore case.")
@click.option("-c", "count_only", is_flag=True, help="Print the number of matching lines.")
@click.option("-C", "context", type=click.IntRange(0), default=0, help="Lines of context.")
@click.option("-v", "invert", is_flag=True, help="Lines that do not match.")
@click.argument("log", default="mail_logs")
@click.pass_context
def grep_cmd(ctx: click.Context, pattern: str, ignore_case: bool, count_only: bool,
             context: int, invert: bool, log: str) -> None:
    """Search a log, e.g. `grep -e "CPQ ICID" mail_logs` or `grep -e "port 7025"`."""
    from pvoq.maillog.search import NO_RESULTS, grep, log_lines

    try:
        found = grep(log_lines(_log_path(ctx, log)), pattern, ignore_case=ignore_case,
                     context=context, invert=invert)
        if count_only:
            click.echo(str(sum(1 for line in found if line != "--")))
            return
        any_found = False
        for line in found:
            any_found = True
            echo(line)
    except re.error as exc:
        raise click.UsageError(f"bad regular expression: {exc}") from None
    if not any_found:
        click.echo(NO_RESULTS)
        sys.exit(1)


@click.command("tail")
@click.option("-n", "lines", type=click.IntRange(1), default=20, show_default=True)
@click.option("-f", "follow_on", is_flag=True, help="Keep printing new lines.")
@click.option("--seconds", type=click.FloatRange(0), default=None,
              help="With -f, stop after this many seconds.")
@click.argument("log", default="mail_logs")
@click.pass_context
def tail_cmd(ctx: click.Context, lines: int, follow_on: bool, seconds: float | None,
             log: str) -> None:
    """The end of a log (and, with -f, what is written next)."""
    from pvoq.maillog.search import follow, tail

    path = _log_path(ctx, log)
    for line in tail(path, lines):
        echo(line)
    if follow_on:
        try:
            for line in follow(path, stop_after_s=seconds):
                echo(line)
        except KeyboardInterrupt:
            pass


def register(cli: click.Group) -> None:
    """Add this module's commands to the `pvoq cli` group."""
    for cmd in (grep_cmd, tail_cmd):
        cli.add_command(cmd)
