"""`pvoq cli -c FILE showrecipients|deleterecipients|suspend...|workqueue|rate|delivernow`: the delivery queues and receiving, as an AsyncOS operator drives them."""

from __future__ import annotations

import time

import click

from pvoq.cli.client import print_json, request
from pvoq.cli.render import cell, echo


def _selection(by_host: str | None, by_sender: str | None) -> dict[str, str]:
    if by_host and by_sender:
        raise click.UsageError("choose --host or --sender, not both")
    if by_host:
        return {"by": "host", "value": by_host}
    if by_sender:
        return {"by": "sender", "value": by_sender}
    return {"by": "all"}


@click.command()
@click.option("--host", "by_host", help="Recipient host (the.cpq.host included).")
@click.option("--sender", "by_sender", help="Envelope sender.")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def showrecipients(ctx: click.Context, by_host: str | None, by_sender: str | None, limit: int,
                   as_json: bool) -> None:
    """Messages in the delivery queues, by recipient host, by envelope sender, or all."""
    d = request(ctx, "showrecipients", {**_selection(by_host, by_sender), "limit": limit})["data"]
    if print_json(as_json, d):
        return
    if not d["messages"]:
        click.echo("No messages found.")
        return
    click.echo(f"{'Message ID':<12}{'Bytes':<10}{'Sender':<32}Subject")
    click.echo(f"  {'[RID]':<8}{'[Atmps]':<9}Recipient")
    for m in d["messages"]:
        echo(f"{cell(m['mid'], 12)}{cell(m['size'], 10)}{cell(m['sender'] or '<>', 32)}"
             f"{m['subject']}")
        for r in m["recipients"]:
            echo(f"  {('[' + str(r['rid']) + ']'):<8}{('[' + str(r['attempts']) + ']'):<9}"
                 f"{r['address']}")
    if d["total"] > len(d["messages"]):
        click.echo(f"({d['total']} messages in all; {len(d['messages'])} shown)")


@click.command()
@click.option("--host", "by_host", help="Recipient host (the.cpq.host included).")
@click.option("--sender", "by_sender", help="Envelope sender.")
@click.option("--all", "everything", is_flag=True, help="Every queued message.")
@click.pass_context
def deleterecipients(ctx: click.Context, by_host: str | None, by_sender: str | None,
                     everything: bool) -> None:
    """Delete queued messages by recipient host, envelope sender, or all of them."""
    selection = _selection(by_host, by_sender)
    if selection["by"] == "all" and not everything:
        raise click.UsageError("say --host HOST, --sender ADDRESS or --all")
    total = request(ctx, "showrecipients", {**selection, "limit": 1})["data"]["total"]
    deleted = 0
    from rich.console import Console  # here: an appliance process never loads rich
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("deleting"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("delete", total=total)
        while True:
            step = request(ctx, "deleterecipients", {**selection, "limit": 5000})
            count = step["data"]["deleted"]
            deleted += count
            bar.update(task, completed=deleted)
            if count < 5000:
                break
    click.echo(f"{deleted} messages deleted." if deleted else "No messages deleted.")


@click.command()
@click.argument("listener", required=False, default="all")
@click.option("--delay", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds open sessions may go on before they are closed.")
@click.pass_context
def suspendlisteners(ctx: click.Context, listener: str, delay: float) -> None:
    """Stop accepting connections on LISTENER (or all; the cpq_listener included)."""
    click.echo(request(ctx, "suspendlisteners", {"listener": listener, "delay": delay})["text"])


@click.command()
@click.argument("listener", required=False, default="all")
@click.pass_context
def resumelisteners(ctx: click.Context, listener: str) -> None:
    """Accept connections again on LISTENER (or all)."""
    click.echo(request(ctx, "resumelisteners", {"listener": listener})["text"])


@click.command()
@click.option("--delay", type=click.FloatRange(0), default=0.0, show_default=True)
@click.pass_context
def suspend(ctx: click.Context, delay: float) -> None:
    """Suspend receiving on every listener and all delivery (System status: Offline)."""
    click.echo(request(ctx, "suspend", {"delay": delay})["text"])


@click.command()
@click.pass_context
def resume(ctx: click.Context) -> None:
    """Resume receiving on every listener and delivery."""
    click.echo(request(ctx, "resume")["text"])


@click.command()
@click.pass_context
def suspenddel(ctx: click.Context) -> None:
    """Suspend delivery (queued mail stays queued)."""
    click.echo(request(ctx, "suspenddel")["text"])


@click.command()
@click.pass_context
def resumedel(ctx: click.Context) -> None:
    """Resume delivery."""
    click.echo(request(ctx, "resumedel")["text"])


@click.command()
@click.argument("action", type=click.Choice(["status", "pause", "resume"]),
                default="status", required=False)
@click.pass_context
def workqueue(ctx: click.Context, action: str) -> None:
    """The gateway's work queue (mail waiting to be scanned): status, pause, resume."""
    click.echo(request(ctx, f"workqueue.{action}")["text"])


@click.command()
@click.pass_context
def resetcounters(ctx: click.Context) -> None:
    """Reset the "Reset" column of the counters."""
    click.echo(request(ctx, "resetcounters")["text"])


@click.command()
@click.argument("interval", type=click.FloatRange(0.1), default=10.0, required=False)
@click.option("--count", type=click.IntRange(1), default=6, show_default=True,
              help="Lines to print before stopping.")
@click.pass_context
def rate(ctx: click.Context, interval: float, count: int) -> None:
    """Activity every INTERVAL seconds: connections, recipients received and completed."""
    click.echo(f"{'':9}{'Connections':>14}{'Recipients':>22}{'':>14}{'Queue':>9}")
    click.echo(f"{'Time':<9}{'In':>7}{'Out':>7}{'Received':>11}{'Delta':>7}"
               f"{'Completed':>11}{'Delta':>7}{'Msgs':>9}")
    before = request(ctx, "rate")["data"]
    for _ in range(count):
        time.sleep(interval)
        now = request(ctx, "rate")["data"]
        rcvd, done = (now["counters"]["recipients_received"],
                      now["counters"]["completed_recipients"])
        click.echo(f"{time.strftime('%H:%M:%S', time.localtime(now['time'])):<9}"
                   f"{now['connections_in']:>7}{now['connections_out']:>7}{rcvd:>11}"
                   f"{rcvd - before['counters']['recipients_received']:>7}{done:>11}"
                   f"{done - before['counters']['completed_recipients']:>7}"
                   f"{now['messages_in_queue']:>9}")
        before = now


@click.command()
@click.argument("host", required=False)
@click.pass_context
def delivernow(ctx: click.Context, host: str | None) -> None:
    """Retry delivery now, for HOST or for every host."""
    click.echo(request(ctx, "delivernow", {"host": host})["text"])


def register(cli: click.Group) -> None:
    """Add this module's commands to the `pvoq cli` group."""
    for cmd in (showrecipients, deleterecipients, suspendlisteners, resumelisteners, suspend,
                resume, suspenddel, resumedel, workqueue, resetcounters, rate, delivernow):
        cli.add_command(cmd)
