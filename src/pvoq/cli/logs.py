"""`pvoq cli -c FILE grep|tail|logconfig|rollovernow`: the appliance's logs.

`grep` and `tail` read the log's files themselves (no running appliance
needed): the rolled files (`mail_logs.@<stamp>.s`, oldest first), then the
current one. `logconfig` and `rollovernow` ask the running appliance.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from pvoq.cli.client import config, print_json, request
from pvoq.cli.render import echo
from pvoq.maillog.settings import FACILITIES, LEVELS, LOG_NAMES, SYSLOG_PROTOCOLS


def _log_files(ctx: click.Context, name: str) -> list[Path]:
    """The files of log *name*, oldest first (the current one last); exit 1 if there is none."""
    from pvoq.maillog.rollover import log_files

    cfg = config(ctx)
    if name not in LOG_NAMES:
        raise click.UsageError(f"unknown log {name!r} (this appliance writes "
                               f"{', '.join(LOG_NAMES)})")
    files = log_files(cfg.logs_dir, name)
    if not files:
        click.echo(f"pvoq: no {name} yet at {cfg.logs_dir / name}", err=True)
        sys.exit(1)
    return files


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
    from pvoq.maillog.search import NO_RESULTS, files_lines, grep

    try:
        found = grep(files_lines(_log_files(ctx, log)), pattern, ignore_case=ignore_case,
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

    files = _log_files(ctx, log)
    for line in tail(files, lines):
        echo(line)
    path = config(ctx).logs_dir / log
    if follow_on:
        try:
            for line in follow(path, stop_after_s=seconds):
                echo(line)
        except KeyboardInterrupt:
            pass


def _show_size(number: int | None) -> str:
    from pvoq.config.logs import show_size

    return "-" if number is None else f"{show_size(number)} ({number} bytes)"


@click.group("logconfig", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def logconfig(ctx: click.Context, as_json: bool) -> None:
    """Each log's settings (`<logs>`), its files and its syslog push; `logconfig edit`."""
    if ctx.invoked_subcommand is not None:
        return
    data = request(ctx, "logconfig")["data"]
    if print_json(as_json, data):
        return
    from pvoq.cli.render import duration

    for n, log in enumerate(data["logs"], 1):
        interval = log["rollover_interval_seconds"]
        syslog = log["syslog"]
        click.echo(f"{n}. \"{log['name']}\" Type: \"Mail Logs\" Retrieval: Manual Download"
                   + (f", Syslog Push ({syslog['protocol'].upper()} {syslog['host']}:"
                      f"{syslog['port']}, facility {syslog['facility']})" if syslog else ""))
        click.echo(f"    Log level:              {log['level']}")
        click.echo(f"    Rollover by file size:  {_show_size(log['max_file_size'])}")
        click.echo(f"    Rollover by time:       "
                   f"{'None' if not interval else 'every ' + duration(interval)}")
        click.echo(f"    Maximum rolled files:   {log['max_files']}")
        if "path" in log:
            click.echo(f"    Current file:           {log['path']} "
                       f"({_show_size(log['size'])})")
            rolled = log["rolled_files"]
            click.echo(f"    Rolled files:           {len(rolled)}"
                       + (f" (oldest {rolled[0]}, newest {rolled[-1]})" if rolled else ""))
        state = log.get("syslog_state")
        if state:
            click.echo(f"    Syslog push:            "
                       f"{'connected' if state['connected'] else 'not connected'}, "
                       f"{state['sent']} sent, {state['waiting']} waiting, "
                       f"{state['dropped']} dropped"
                       + (f"; last error: {state['last_error']}" if state["last_error"] else ""))


@logconfig.command("edit")
@click.argument("log", default="mail_logs", type=click.Choice(LOG_NAMES))
@click.option("--level", type=click.Choice(LEVELS, case_sensitive=False))
@click.option("--max-size", "max_file_size", metavar="SIZE",
              help="Rollover by file size: bytes, or with K, M, G (10M).")
@click.option("--interval", "rollover_interval_seconds", metavar="SECONDS",
              help="Rollover by time: seconds between rollovers; 0 or none: no rollover by time.")
@click.option("--max-files", metavar="N", help="Rolled files kept (the oldest are deleted).")
@click.option("--syslog-host", metavar="HOST", help="Push each line to this syslog server.")
@click.option("--syslog-port", metavar="PORT")
@click.option("--syslog-protocol", type=click.Choice(SYSLOG_PROTOCOLS, case_sensitive=False))
@click.option("--syslog-facility", type=click.Choice(tuple(FACILITIES), case_sensitive=False))
@click.option("--no-syslog", is_flag=True, help="Stop the syslog push.")
@click.pass_context
def logconfig_edit(ctx: click.Context, log: str, level: str | None, max_file_size: str | None,
                   rollover_interval_seconds: str | None, max_files: str | None,
                   syslog_host: str | None, syslog_port: str | None,
                   syslog_protocol: str | None, syslog_facility: str | None,
                   no_syslog: bool) -> None:
    """Change LOG's settings: saved in the configuration file's <logs>, applied by reload."""
    args: dict[str, object] = {"log": log, "level": level, "max_file_size": max_file_size,
                               "rollover_interval_seconds": rollover_interval_seconds,
                               "max_files": max_files}
    syslog = {"host": syslog_host, "port": syslog_port, "protocol": syslog_protocol,
              "facility": syslog_facility}
    if no_syslog:
        if any(syslog.values()):
            raise click.UsageError("--no-syslog with --syslog-* options")
        args["syslog"] = None
    elif any(syslog.values()):
        args["syslog"] = syslog
    click.echo(request(ctx, "logconfig.edit", args)["text"])


@click.command("rollovernow")
@click.argument("log", default="all", type=click.Choice(("all", *LOG_NAMES)))
@click.pass_context
def rollovernow(ctx: click.Context, log: str) -> None:
    """Roll a log over now (LOG, or all of them)."""
    click.echo(request(ctx, "rollovernow", {"log": log})["text"])


def register(cli: click.Group) -> None:
    """Add this module's commands to the `pvoq cli` group."""
    for cmd in (grep_cmd, tail_cmd, logconfig, rollovernow):
        cli.add_command(cmd)
