"""`pvoq cli -c FILE COMMAND`: operator commands against a running appliance.

Each command sends one request over the admin socket and renders the answer
in the shape AsyncOS administrators know (`--json` for scripts).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from pvoq.admin.protocol import AdminUnavailable, call
from pvoq.maillog.writer import format_time


def _request(ctx: click.Context, command: str, args: dict[str, Any] | None = None) -> Any:
    from pvoq.cli.main import load_or_exit

    cfg = load_or_exit(ctx.obj["config"])
    try:
        response = call(cfg.admin_socket, command, args)
    except AdminUnavailable as exc:
        click.echo(f"pvoq: {cfg.role} {cfg.hostname} is not running: {exc}", err=True)
        sys.exit(1)
    if not response.get("ok"):
        click.echo(response.get("error", "command failed"), err=True)
        sys.exit(int(response.get("exit", 1)))
    return response


@click.group("cli")
@click.option("-c", "--config", "config_path", required=True, type=click.Path())
@click.pass_context
def operator(ctx: click.Context, config_path: str) -> None:
    """Operator commands against the running appliance of CONFIG."""
    ctx.obj = {"config": config_path}


@operator.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """System status, counters and gauges."""
    data = _request(ctx, "status")["data"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"Status as of:                  {format_time(data['status_as_of'])}")
    click.echo(f"Up since:                      {format_time(data['up_since'])}")
    click.echo(f"System status: {data['system_status']}")
    click.echo(f"Appliance:                     {data['role']} {data['hostname']}")
    click.echo("")
    click.echo(f"Messages Received              {data['messages_received']:>10}")
    click.echo(f"Active Recipients              {data['active_recipients']:>10}")
    if data["role"] == "manager":
        click.echo("Messages In Quarantine")
        click.echo(f"  Policy, Virus and Outbreak   {data['messages_in_quarantine']:>10}")
        click.echo("Kilobytes In Quarantine")
        click.echo(f"  Policy, Virus and Outbreak   {data['kilobytes_in_quarantine']:>10}")
    else:
        click.echo(f"Messages In Work Queue         {data['messages_in_work_queue']:>10}")
        click.echo(f"Messages In the.cpq.host       {data['messages_in_cpq_host']:>10}")
        click.echo(f"Kilobytes In the.cpq.host      {data['kilobytes_in_cpq_host']:>10}")


@operator.command()
@click.argument("sort", required=False,
                type=click.Choice(["active_rcpts", "conn_out", "deliv_rcpts", "hard_bounces",
                                   "soft_bounces"]))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tophosts(ctx: click.Context, sort: str | None, as_json: bool) -> None:
    """Delivery hosts, `the.cpq.host` and `the.cpq.release.host` included."""
    data = _request(ctx, "tophosts", {"sort": sort})["data"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"Status as of: {format_time(data['status_as_of'])} {time.strftime('%Z')}")
    click.echo("Hosts marked with '*' were down as of the last delivery attempt.")
    click.echo(f"{'':4}{'':26}{'Active':<8}{'Conn.':<7}{'Deliv.':<8}{'Soft':<9}{'Hard'}")
    click.echo(f"{'#':<4}{'Recipient Host':<26}{'Recip.':<8}{'Out':<7}{'Recip.':<8}"
               f"{'Bounced':<9}{'Bounced'}")
    for i, h in enumerate(data["hosts"], 1):
        name = ("*" if h["down"] else "") + h["host"]
        click.echo(f"{i:<4}{name:<26}{h['active_rcpts']:<8}{h['conn_out']:<7}"
                   f"{h['deliv_rcpts']:<8}{h['soft_bounces']:<9}{h['hard_bounces']}")


@operator.command()
@click.argument("host", required=False)
@click.pass_context
def delivernow(ctx: click.Context, host: str | None) -> None:
    """Retry delivery now, for HOST or for every host."""
    click.echo(_request(ctx, "delivernow", {"host": host})["text"])


@operator.command()
@click.pass_context
def reload(ctx: click.Context) -> None:
    """Re-read the configuration (as SIGHUP does); a bad file is refused, the old one runs on."""
    click.echo(_request(ctx, "reload")["text"])


@operator.group()
def pvo() -> None:
    """Centralized Policy, Virus and Outbreak quarantine settings (gateway)."""


@pvo.command("check")
@click.pass_context
def pvo_check(ctx: click.Context) -> None:
    """Can centralized PVO be enabled? (what greys out the gateway's Enable button)"""
    click.echo(_request(ctx, "pvo.check")["text"])


@operator.group()
def quarantine() -> None:
    """The manager's Policy, Virus and Outbreak quarantines."""


def _reasons(quarantines: list[dict[str, Any]]) -> str:
    return "; ".join(f"{q['quarantine']}: {q['reason']}" for q in quarantines
                     if q["state"] == "held")


@quarantine.command("list")
@click.option("-q", "--quarantine", "name", default=None, help="Only this quarantine.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_list(ctx: click.Context, name: str | None, limit: int, offset: int,
                    as_json: bool) -> None:
    """Messages held, newest first."""
    data = _request(ctx, "quarantine.list",
                    {"quarantine": name, "limit": limit, "offset": offset})["data"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"PVO quarantines: {data['total']} messages"
                  + (f" in {name}" if name else ""), title_justify="left")
    for col in ("MID", "Received", "Gateway (MID)", "Sender", "Subject", "Size",
                "Quarantines (reason)"):
        table.add_column(col, overflow="fold")
    for m in data["messages"]:
        table.add_row(str(m["id"]), format_time(m["received_at"]),
                      f"{m['origin_host']} ({m['origin_mid']})", m["sender"], m["subject"],
                      f"{m['size'] / 1024:.1f}K", _reasons(m["quarantines"]))
    Console(width=max(140, Console().width)).print(table)


@quarantine.command("show")
@click.argument("mid", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_show(ctx: click.Context, mid: int, as_json: bool) -> None:
    """One message: envelope, reasons, and the message itself."""
    m = _request(ctx, "quarantine.show", {"mid": mid})["data"]
    if as_json:
        click.echo(json.dumps(m, indent=2))
        return
    click.echo(f"MID:               {m['id']}")
    click.echo(f"State:             {m['state']}")
    click.echo(f"Received:          {format_time(m['received_at'])}")
    click.echo(f"Gateway:           {m['origin_host']} ({m['origin_ip']}) MID {m['origin_mid']}")
    click.echo(f"Envelope sender:   {m['sender']}")
    for r in m["recipients"]:
        click.echo(f"Envelope rcpt:     [{r['rid']}] {r['address']}")
    click.echo(f"Subject:           {m['subject']}")
    click.echo(f"Size:              {m['size']} bytes")
    for q in m["quarantines"]:
        click.echo(f'Quarantine:        "{q["quarantine"]}" {q["state"]} ({q["reason"]})')
    if m.get("body"):
        click.echo("")
        click.echo(m["body"])


@quarantine.command("release")
@click.argument("mids", type=int, nargs=-1, required=True)
@click.option("-q", "--quarantine", "name", default=None,
              help="Release from this quarantine only (default: from all).")
@click.pass_context
def quarantine_release(ctx: click.Context, mids: tuple[int, ...], name: str | None) -> None:
    """Release messages; each goes back to the gateway it came from."""
    for mid in mids:
        click.echo(_request(ctx, "quarantine.release", {"mid": mid, "quarantine": name})["text"])


@quarantine.command("delete")
@click.argument("mids", type=int, nargs=-1, required=True)
@click.option("-q", "--quarantine", "name", default=None,
              help="Delete from this quarantine only (the message is then never delivered).")
@click.pass_context
def quarantine_delete(ctx: click.Context, mids: tuple[int, ...], name: str | None) -> None:
    """Delete messages."""
    for mid in mids:
        click.echo(_request(ctx, "quarantine.delete", {"mid": mid, "quarantine": name})["text"])


@operator.group()
def pipeline() -> None:
    """The gateway's scanning pipeline."""


@pipeline.command("show")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def pipeline_show(ctx: click.Context, as_json: bool) -> None:
    """The stages in the order they run, and where a release from each resumes."""
    data = _request(ctx, "pipeline.show")["data"]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"Scanning pipeline of {data['hostname']} (stages run in this order):")
    click.echo(f"{'#':<3}{'Stage':<18}{'PVO':<5}{'Quarantine':<12}{'Timeout':<9}Engine / rules")
    for s in data["stages"]:
        timeout = f"{s['timeout_s']:g}s" if s["timeout_s"] else "-"
        click.echo(f"{s['n']:<3}{s['stage']:<18}{s['pvo']:<5}{s['quarantine']:<12}"
                   f"{timeout:<9}{s['engine']}")
    click.echo("")
    click.echo("A message released from a quarantine re-enters the pipeline:")
    for s in data["stages"]:
        if s["release_runs"]:
            click.echo(f"  released from {s['stage']:<17} runs: {' -> '.join(s['release_runs'])}")
    click.echo("A check that errs or times out is a temporary failure: the message stays "
               "queued and is scanned again.")


@operator.group()
def outbreak() -> None:
    """Outbreak filter rules and the gateway's copies of outbreak-quarantined mail."""


@outbreak.command("reload")
@click.pass_context
def outbreak_reload(ctx: click.Context) -> None:
    """Re-read the rules file now; if it changed, rescan the kept copies."""
    click.echo(_request(ctx, "outbreak.reload")["text"])


@outbreak.command("rescan")
@click.pass_context
def outbreak_rescan(ctx: click.Context) -> None:
    """Rescan every kept copy against the rules in force and tell the manager."""
    click.echo(_request(ctx, "outbreak.rescan")["text"])


# The search, bulk, saved-search, delay/move/copy and audit commands register themselves
# on the groups above.
from pvoq.cli import quarantine_search as _quarantine_search  # noqa: E402,F401,I001
