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


def _as_json(as_json: bool, data: Any) -> bool:
    """Print *data* as JSON (for scripts) when `--json` was given; say whether it was."""
    if as_json:
        click.echo(json.dumps(data, indent=2))
    return as_json


def _age(seconds: float) -> str:
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "",
             f"{minutes}m" if minutes else "", f"{secs}s"]
    return " ".join(p for p in parts if p)


def _when(epoch: float | None) -> str:
    return "Never" if not epoch else f"{format_time(epoch)} ({_age(time.time() - epoch)} ago)"


COUNTER_LINES = (
    ("Receiving", None, 0), ("Messages Received", "messages_received", 2),
    ("Recipients Received", "recipients_received", 2),
    ("Queue", None, 0), ("Soft Bounced Events", "soft_bounced_events", 2),
    ("Completion", None, 0), ("Completed Recipients", "completed_recipients", 2),
    ("Hard Bounced Recipients", "hard_bounced_recipients", 4),
    ("5XX Hard Bounces", "hard_bounced_5xx", 6), ("Expired Hard Bounces", "expired_recipients", 6),
    ("Delivered Recipients", "delivered_recipients", 4),
    ("Deleted Recipients", "deleted_recipients", 4),
)


@operator.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """System status, counters (reset, uptime, lifetime) and gauges."""
    data = _request(ctx, "status")["data"]
    if _as_json(as_json, data):
        return
    zone = time.strftime("%Z")
    click.echo(f"Status as of:                  {format_time(data['status_as_of'])} {zone}")
    click.echo(f"Up since:                      {format_time(data['up_since'])} {zone} "
               f"({_age(data['status_as_of'] - data['up_since'])})")
    click.echo(f"Last counter reset:            {format_time(data['counters_reset'])} {zone}")
    click.echo(f"System status: {data['system_status']}")
    if data["receiving_suspended"]:
        click.echo(f"Receiving suspended:           {', '.join(data['receiving_suspended'])}")
    if data["delivery_suspended"]:
        click.echo("Delivery suspended:            yes")
    oldest = data["oldest_message"]
    click.echo("Oldest Message:                "
               + ("No Messages" if not oldest else _age(data["status_as_of"] - oldest)))
    click.echo(f"Appliance:                     {data['role']} {data['hostname']}")
    click.echo("")
    click.echo(f"{'Counters:':<34}{'Reset':>12}{'Uptime':>12}{'Lifetime':>12}")
    for label, key, indent in COUNTER_LINES:
        if key is None:
            click.echo(f"  {label}")
            continue
        reset, uptime, lifetime = data["counters"][key]
        click.echo(f"{' ' * (indent + 2)}{label:<{32 - indent}}{reset:>12}{uptime:>12}"
                   f"{lifetime:>12}")
    click.echo("")
    click.echo(f"{'Gauges:':<34}{'Current':>12}")
    click.echo("  Queue")
    for label, key in (("Active Recipients", "active_recipients"),
                       ("Unattempted Recipients", "unattempted_recipients"),
                       ("Attempted Recipients", "attempted_recipients"),
                       ("Messages In Queue", "messages_in_queue"),
                       ("Destinations In Memory", "destinations_in_memory")):
        click.echo(f"    {label:<30}{data[key]:>12}")
    if data["role"] == "manager":
        click.echo("  Messages In Quarantine")
        click.echo(f"    {'Policy, Virus and Outbreak':<30}{data['messages_in_quarantine']:>12}")
        click.echo("  Kilobytes In Quarantine")
        click.echo(f"    {'Policy, Virus and Outbreak':<30}{data['kilobytes_in_quarantine']:>12}")
        click.echo(f"  {'Messages In the.cpq.release.host':<32}"
                   f"{data.get('messages_in_release_host', 0):>12}")
    else:
        click.echo(f"    {'Messages In Work Queue':<30}{data['messages_in_work_queue']:>12}")
        click.echo(f"  {'Messages In the.cpq.host':<32}{data['messages_in_cpq_host']:>12}")
        click.echo(f"  {'Kilobytes In the.cpq.host':<32}{data['kilobytes_in_cpq_host']:>12}")


@operator.command()
@click.argument("sort", required=False,
                type=click.Choice(["active_rcpts", "conn_out", "deliv_rcpts", "hard_bounces",
                                   "soft_bounces"]))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tophosts(ctx: click.Context, sort: str | None, as_json: bool) -> None:
    """Delivery hosts, `the.cpq.host` and `the.cpq.release.host` included."""
    data = _request(ctx, "tophosts", {"sort": sort})["data"]
    if _as_json(as_json, data):
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
@click.argument("host")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hoststatus(ctx: click.Context, host: str, as_json: bool) -> None:
    """One delivery host, `the.cpq.host` and `the.cpq.release.host` included."""
    d = _request(ctx, "hoststatus", {"host": host})["data"]
    if _as_json(as_json, d):
        return
    click.echo(f"Host mail status for: '{d['host']}'")
    click.echo(f"Status as of:                {format_time(d['status_as_of'])}")
    click.echo(f"Host up/down:                {'down' if d['down'] else 'up'}")
    if d["delivery_suspended"]:
        click.echo("Delivery:                    suspended (suspenddel)")
    click.echo("")
    click.echo("Counters:")
    for label, key in (("Delivered Recipients", "delivered_recipients"),
                       ("Hard Bounced Recipients", "hard_bounced"),
                       ("Soft Bounced Events", "soft_bounced"),
                       ("Deleted Recipients", "deleted_recipients"),
                       ("Outbound Connections", "connections")):
        click.echo(f"  {label:<30}{d[key]:>10}")
    click.echo("Gauges:")
    for label, key in (("Active Recipients", "active_recipients"),
                       ("Unattempted Recipients", "unattempted_recipients"),
                       ("Attempted Recipients", "attempted_recipients"),
                       ("Current Outbound Connections", "current_outbound_connections")):
        click.echo(f"  {label:<30}{d[key]:>10}")
    oldest = d["oldest_message"]
    click.echo(f"  {'Oldest Message':<30}{'No Messages' if not oldest else _age(time.time() - oldest):>10}")
    click.echo(f"  {'Last Activity':<30}{_when(d['last_activity'])}")
    if d["last_error"]:
        click.echo(f"  {'Last Error':<30}{d['last_error']}")


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
    if _as_json(as_json, data):
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
    if _as_json(as_json, m):
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
@click.option("--recipient", "recipients", multiple=True, metavar="ADDRESS",
              help="Release for this envelope recipient only (repeatable).")
@click.pass_context
def quarantine_release(ctx: click.Context, mids: tuple[int, ...], name: str | None,
                       recipients: tuple[str, ...]) -> None:
    """Release messages; each goes back to the gateway it came from."""
    for mid in mids:
        click.echo(_request(ctx, "quarantine.release", {"mid": mid, "quarantine": name,
                                                        "recipients": list(recipients)})["text"])


@quarantine.command("delete")
@click.argument("mids", type=int, nargs=-1, required=True)
@click.option("-q", "--quarantine", "name", default=None,
              help="Delete from this quarantine only (the message is then never delivered).")
@click.option("--recipient", "recipients", multiple=True, metavar="ADDRESS",
              help="Delete for this envelope recipient only (repeatable).")
@click.pass_context
def quarantine_delete(ctx: click.Context, mids: tuple[int, ...], name: str | None,
                      recipients: tuple[str, ...]) -> None:
    """Delete messages."""
    for mid in mids:
        click.echo(_request(ctx, "quarantine.delete", {"mid": mid, "quarantine": name,
                                                       "recipients": list(recipients)})["text"])


from pvoq.cli import quarantine_search as _quarantine_search  # noqa: E402,F401,I001
from pvoq.cli import remote as _remote  # noqa: E402,F401,I001
from pvoq.cli import logs as _logs  # noqa: E402,F401,I001
from pvoq.cli import queues as _queues  # noqa: E402,F401,I001
from pvoq.cli import scanning as _scanning  # noqa: E402,F401,I001
from pvoq.cli import spool as _spool  # noqa: E402,F401,I001
