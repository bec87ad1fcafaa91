"""`pvoq cli -c FILE COMMAND`: operator commands against a running appliance.

Each command sends one request over the admin socket and renders the answer
in the shape AsyncOS administrators know (`--json` for scripts).
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
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
    if as_json:
        click.echo(json.dumps(data, indent=2))
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
@click.argument("host")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def hoststatus(ctx: click.Context, host: str, as_json: bool) -> None:
    """One delivery host, `the.cpq.host` and `the.cpq.release.host` included."""
    d = _request(ctx, "hoststatus", {"host": host})["data"]
    if as_json:
        click.echo(json.dumps(d, indent=2))
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


def _selection(by_host: str | None, by_sender: str | None) -> dict[str, str]:
    if by_host and by_sender:
        raise click.UsageError("choose --host or --sender, not both")
    if by_host:
        return {"by": "host", "value": by_host}
    if by_sender:
        return {"by": "sender", "value": by_sender}
    return {"by": "all"}


@operator.command()
@click.option("--host", "by_host", help="Recipient host (the.cpq.host included).")
@click.option("--sender", "by_sender", help="Envelope sender.")
@click.option("--limit", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def showrecipients(ctx: click.Context, by_host: str | None, by_sender: str | None, limit: int,
                   as_json: bool) -> None:
    """Messages in the delivery queues, by recipient host, by envelope sender, or all."""
    d = _request(ctx, "showrecipients", {**_selection(by_host, by_sender), "limit": limit})["data"]
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    if not d["messages"]:
        click.echo("No messages found.")
        return
    click.echo(f"{'Message ID':<12}{'Bytes':<10}{'Sender':<32}Subject")
    click.echo(f"  {'[RID]':<8}{'[Atmps]':<9}Recipient")
    for m in d["messages"]:
        click.echo(f"{m['mid']:<12}{m['size']:<10}{m['sender'] or '<>':<32}{m['subject']}")
        for r in m["recipients"]:
            click.echo(f"  {('[' + str(r['rid']) + ']'):<8}{('[' + str(r['attempts']) + ']'):<9}"
                       f"{r['address']}")
    if d["total"] > len(d["messages"]):
        click.echo(f"({d['total']} messages in all; {len(d['messages'])} shown)")


@operator.command()
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
    total = _request(ctx, "showrecipients", {**selection, "limit": 1})["data"]["total"]
    deleted = 0
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("deleting"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("delete", total=total)
        while True:
            step = _request(ctx, "deleterecipients", {**selection, "limit": 5000})
            count = step["data"]["deleted"]
            deleted += count
            bar.update(task, completed=deleted)
            if count < 5000:
                break
    click.echo(f"{deleted} messages deleted." if deleted else "No messages deleted.")


@operator.command()
@click.argument("listener", required=False, default="all")
@click.option("--delay", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds open sessions may go on before they are closed.")
@click.pass_context
def suspendlisteners(ctx: click.Context, listener: str, delay: float) -> None:
    """Stop accepting connections on LISTENER (or all; the cpq_listener included)."""
    click.echo(_request(ctx, "suspendlisteners", {"listener": listener, "delay": delay})["text"])


@operator.command()
@click.argument("listener", required=False, default="all")
@click.pass_context
def resumelisteners(ctx: click.Context, listener: str) -> None:
    """Accept connections again on LISTENER (or all)."""
    click.echo(_request(ctx, "resumelisteners", {"listener": listener})["text"])


@operator.command()
@click.option("--delay", type=click.FloatRange(0), default=0.0, show_default=True)
@click.pass_context
def suspend(ctx: click.Context, delay: float) -> None:
    """Suspend receiving on every listener and all delivery (System status: Offline)."""
    click.echo(_request(ctx, "suspend", {"delay": delay})["text"])


@operator.command()
@click.pass_context
def resume(ctx: click.Context) -> None:
    """Resume receiving on every listener and delivery."""
    click.echo(_request(ctx, "resume")["text"])


@operator.command()
@click.pass_context
def suspenddel(ctx: click.Context) -> None:
    """Suspend delivery (queued mail stays queued)."""
    click.echo(_request(ctx, "suspenddel")["text"])


@operator.command()
@click.pass_context
def resumedel(ctx: click.Context) -> None:
    """Resume delivery."""
    click.echo(_request(ctx, "resumedel")["text"])


@operator.command()
@click.argument("action", type=click.Choice(["status", "pause", "resume"]),
                default="status", required=False)
@click.pass_context
def workqueue(ctx: click.Context, action: str) -> None:
    """The gateway's work queue (mail waiting to be scanned): status, pause, resume."""
    click.echo(_request(ctx, f"workqueue.{action}")["text"])


@operator.command()
@click.pass_context
def resetcounters(ctx: click.Context) -> None:
    """Reset the "Reset" column of the counters."""
    click.echo(_request(ctx, "resetcounters")["text"])


@operator.command()
@click.argument("interval", type=click.FloatRange(0.1), default=10.0, required=False)
@click.option("--count", type=click.IntRange(1), default=6, show_default=True,
              help="Lines to print before stopping.")
@click.pass_context
def rate(ctx: click.Context, interval: float, count: int) -> None:
    """Activity every INTERVAL seconds: connections, recipients received and completed."""
    click.echo(f"{'':9}{'Connections':>14}{'Recipients':>22}{'':>14}{'Queue':>9}")
    click.echo(f"{'Time':<9}{'In':>7}{'Out':>7}{'Received':>11}{'Delta':>7}"
               f"{'Completed':>11}{'Delta':>7}{'Msgs':>9}")
    before = _request(ctx, "rate")["data"]
    for _ in range(count):
        time.sleep(interval)
        now = _request(ctx, "rate")["data"]
        rcvd, done = (now["counters"]["recipients_received"],
                      now["counters"]["completed_recipients"])
        click.echo(f"{time.strftime('%H:%M:%S', time.localtime(now['time'])):<9}"
                   f"{now['connections_in']:>7}{now['connections_out']:>7}{rcvd:>11}"
                   f"{rcvd - before['counters']['recipients_received']:>7}{done:>11}"
                   f"{done - before['counters']['completed_recipients']:>7}"
                   f"{now['messages_in_queue']:>9}")
        before = now


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


def _log_path(ctx: click.Context, name: str) -> Path:
    from pvoq.cli.main import load_or_exit

    cfg = load_or_exit(ctx.obj["config"])
    if name != "mail_logs":
        raise click.UsageError(f"unknown log {name!r} (this appliance writes mail_logs)")
    path = cfg.logs_dir / name
    if not path.exists():
        click.echo(f"pvoq: no {name} yet at {path}", err=True)
        sys.exit(1)
    return path


@operator.command("grep")
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
            click.echo(line)
    except re.error as exc:
        raise click.UsageError(f"bad regular expression: {exc}") from None
    if not any_found:
        click.echo(NO_RESULTS)
        sys.exit(1)


@operator.command("tail")
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
        click.echo(line)
    if follow_on:
        try:
            for line in follow(path, stop_after_s=seconds):
                click.echo(line)
        except KeyboardInterrupt:
            pass


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
from pvoq.cli import remote as _remote  # noqa: E402,F401,I001
