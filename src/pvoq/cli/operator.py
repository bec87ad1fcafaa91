"""`pvoq cli -c FILE status|tophosts|hoststatus|reload|pvo ...`: the appliance's state.

`pvo check|enable|disable|status`: a gateway's readiness and mode (`gateway.enable`).

Each command sends one request over the admin socket (`cli.client`) and
renders the answer in the shape AsyncOS administrators know (`--json` for
scripts).
"""

from __future__ import annotations

import time

import click

from pvoq.cli.client import client_of, print_json, request
from pvoq.cli.render import age, cell, echo, when
from pvoq.maillog.writer import format_time

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


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """System status, counters (reset, uptime, lifetime) and gauges."""
    data = request(ctx, "status")["data"]
    if print_json(as_json, data):
        return
    zone = time.strftime("%Z")
    click.echo(f"Status as of:                  {format_time(data['status_as_of'])} {zone}")
    click.echo(f"Up since:                      {format_time(data['up_since'])} {zone} "
               f"({age(data['status_as_of'] - data['up_since'])})")
    click.echo(f"Last counter reset:            {format_time(data['counters_reset'])} {zone}")
    click.echo(f"System status: {data['system_status']}")
    if data["receiving_suspended"]:
        click.echo(f"Receiving suspended:           {', '.join(data['receiving_suspended'])}")
    if data["delivery_suspended"]:
        click.echo("Delivery suspended:            yes")
    oldest = data["oldest_message"]
    click.echo("Oldest Message:                "
               + ("No Messages" if not oldest else age(data["status_as_of"] - oldest)))
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
        if "messages_in_quarantine" in data:  # local quarantines in use
            click.echo("  Messages In Quarantine")
            click.echo(f"    {'Policy, Virus and Outbreak':<30}"
                       f"{data['messages_in_quarantine']:>12}")
            click.echo("  Kilobytes In Quarantine")
            click.echo(f"    {'Policy, Virus and Outbreak':<30}"
                       f"{data['kilobytes_in_quarantine']:>12}")
        click.echo(f"  {'Messages In the.cpq.host':<32}{data['messages_in_cpq_host']:>12}")
        click.echo(f"  {'Kilobytes In the.cpq.host':<32}{data['kilobytes_in_cpq_host']:>12}")


@click.command()
@click.argument("sort", required=False,
                type=click.Choice(["active_rcpts", "conn_out", "deliv_rcpts", "hard_bounces",
                                   "soft_bounces"]))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def tophosts(ctx: click.Context, sort: str | None, as_json: bool) -> None:
    """Delivery hosts, `the.cpq.host` and `the.cpq.release.host` included."""
    data = request(ctx, "tophosts", {"sort": sort})["data"]
    if print_json(as_json, data):
        return
    click.echo(f"Status as of: {format_time(data['status_as_of'])} {time.strftime('%Z')}")
    click.echo("Hosts marked with '*' were down as of the last delivery attempt.")
    click.echo(f"{'':4}{'':26}{'Active':<8}{'Conn.':<7}{'Deliv.':<8}{'Soft':<9}{'Hard'}")
    click.echo(f"{'#':<4}{'Recipient Host':<26}{'Recip.':<8}{'Out':<7}{'Recip.':<8}"
               f"{'Bounced':<9}{'Bounced'}")
    for i, h in enumerate(data["hosts"], 1):
        name = ("*" if h["down"] else "") + h["host"]
        echo(f"{cell(i, 4)}{cell(name, 26)}{cell(h['active_rcpts'], 8)}"
             f"{cell(h['conn_out'], 7)}{cell(h['deliv_rcpts'], 8)}"
             f"{cell(h['soft_bounces'], 9)}{h['hard_bounces']}")


@click.command()
@click.argument("host")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hoststatus(ctx: click.Context, host: str, as_json: bool) -> None:
    """One delivery host, `the.cpq.host` and `the.cpq.release.host` included."""
    d = request(ctx, "hoststatus", {"host": host})["data"]
    if print_json(as_json, d):
        return
    echo(f"Host mail status for: '{d['host']}'")
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
    click.echo(f"  {'Oldest Message':<30}{'No Messages' if not oldest else age(time.time() - oldest):>10}")
    click.echo(f"  {'Last Activity':<30}{when(d['last_activity'])}")
    if d["last_error"]:
        echo(f"  {'Last Error':<30}{d['last_error']}")
    for peer in d.get("peers") or []:  # a gateway's managers, in the order it tries them
        state = ("up" if not peer["failures"] else
                 f"{peer['failures']} failures, next try in {peer['retry_in']:.0f}s: "
                 f"{peer['last_error']}")
        echo(f"  {'Manager ' + peer['peer']:<29} {state}")


@click.command()
@click.pass_context
def reload(ctx: click.Context) -> None:
    """Re-read the configuration (as SIGHUP does); a bad file is refused, the old one runs on.

    A file that does not load is sent to the appliance running from it all the same: it
    refuses the file with the error and keeps its configuration (exit 1).
    """
    click.echo(client_of(ctx).request_running("reload")["text"])


@click.group()
def pvo() -> None:
    """Centralized Policy, Virus and Outbreak quarantine settings (gateway)."""


@pvo.command("check")
@click.pass_context
def pvo_check(ctx: click.Context) -> None:
    """Can centralized PVO be enabled? (what greys out the gateway's Enable button)"""
    echo(request(ctx, "pvo.check")["text"], multiline=True)  # one line per manager


@pvo.command("enable")
@click.pass_context
def pvo_enable(ctx: click.Context) -> None:
    """Switch this gateway to centralized quarantines (after the readiness check)."""
    echo(request(ctx, "pvo.enable")["text"], multiline=True)


@pvo.command("disable")
@click.pass_context
def pvo_disable(ctx: click.Context) -> None:
    """Hold newly caught mail in this gateway's local quarantines again."""
    echo(request(ctx, "pvo.disable")["text"])


@pvo.command("status")
@click.pass_context
def pvo_status(ctx: click.Context) -> None:
    """The mode: local, centralized, or centralized with messages still held locally."""
    echo(request(ctx, "pvo.status")["text"], multiline=True)


def register(cli: click.Group) -> None:
    """Add this module's commands to the `pvoq cli` group."""
    for cmd in (status, tophosts, hoststatus, reload, pvo):
        cli.add_command(cmd)
