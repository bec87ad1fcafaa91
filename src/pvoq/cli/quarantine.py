"""`pvoq cli -c MANAGER quarantine list|show|release|delete`, `quarantine
search|bulk|saved|delay|move|copy|expire|config` and `pvoq cli -c MANAGER audit verify|tail`.

Search filters as AsyncOS names them: `--sender contains:alice`,
`--subject does-not-start-with:RE:`, `--recipient ends-with:@example.com`,
`--reason contains:Eicar`, `--attachment ends-with:.exe`, attachment size
bounds, `--gateway`, a received range (`--from/--to` dates or `--last 7d`);
sorted and paged (20, 50, 100 or 250 a page) with a total count. A bulk
action acts on everything a search finds; `--dry-run` lists it and changes
nothing. Every command goes through the manager's quarantine service (and
so into its audit trail).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import click

from pvoq.cli.client import print_json, request
from pvoq.cli.render import columns, duration, echo, reasons, rich_text
from pvoq.maillog.writer import format_time


def printable(text: object) -> str:
    """The receipts' `printable`, imported when a line is shown: loading the CLI (as every
    appliance process does) does not load SQLAlchemy for it."""
    from pvoq.quarantine.receipts import printable as shown

    return shown(text)


@click.group()
def quarantine() -> None:
    """The manager's Policy, Virus and Outbreak quarantines."""


def _total(data: dict[str, Any]) -> str:
    """The total as counted: exact, or "more than 10,000" when the count stopped at its cap."""
    return str(data["total"]) if data.get("total_exact", True) else f"more than {data['total']:,}"


@quarantine.command("list")
@click.option("-q", "--quarantine", "name", default=None, help="Only this quarantine.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_list(ctx: click.Context, name: str | None, limit: int, offset: int,
                    as_json: bool) -> None:
    """Messages held, newest first."""
    data = request(ctx, "quarantine.list",
                    {"quarantine": name, "limit": limit, "offset": offset})["data"]
    if print_json(as_json, data):
        return
    from rich.console import Console  # here: an appliance process never loads rich
    from rich.table import Table

    held = _total(data)
    table = Table(title=rich_text(f"PVO quarantines: {held} messages"
                                  + (f" in {name}" if name else "")), title_justify="left")
    for col in ("MID", "Received", "Gateway (MID)", "Sender", "Subject", "Size",
                "Quarantines (reason)"):
        table.add_column(col, overflow="fold")
    for m in data["messages"]:
        table.add_row(*map(rich_text, (
            m["id"], format_time(m["received_at"]), f"{m['origin_host']} ({m['origin_mid']})",
            m["sender"], m["subject"], f"{m['size'] / 1024:.1f}K", reasons(m["quarantines"]))))
    Console(width=max(140, Console().width)).print(table)


@quarantine.command("show")
@click.argument("mid", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_show(ctx: click.Context, mid: int, as_json: bool) -> None:
    """One message: envelope, reasons, and the message itself."""
    m = request(ctx, "quarantine.show", {"mid": mid})["data"]
    if print_json(as_json, m):
        return
    click.echo(f"MID:               {m['id']}")
    click.echo(f"State:             {m['state']}")
    click.echo(f"Received:          {format_time(m['received_at'])}")
    echo(f"Gateway:           {m['origin_host']} ({m['origin_ip']}) MID {m['origin_mid']}")
    echo(f"Envelope sender:   {m['sender']}")
    for r in m["recipients"]:
        echo(f"Envelope rcpt:     [{r['rid']}] {r['address']}")
    echo(f"Subject:           {m['subject']}")
    click.echo(f"Size:              {m['size']} bytes")
    for q in m["quarantines"]:
        echo(f'Quarantine:        "{q["quarantine"]}" {q["state"]} ({q["reason"]})')
    for line in m.get("release_history", []):  # made printable and bounded by the manager
        click.echo(f"Release:           {line}")
    if m.get("body"):
        click.echo("")
        echo(m["body"], multiline=True)


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
        echo(request(ctx, "quarantine.release", {"mid": mid, "quarantine": name,
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
        echo(request(ctx, "quarantine.delete", {"mid": mid, "quarantine": name,
                                                 "recipients": list(recipients)})["text"])


OPS = ("contains", "does-not-contain", "starts-with", "does-not-start-with", "ends-with",
       "does-not-end-with", "is", "is-not")
UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _text_filter(value: str | None) -> dict[str, str] | None:
    if value is None:
        return None
    op, sep, text = value.partition(":")
    if not sep or op not in OPS:
        raise click.BadParameter(f"expected OPERATOR:VALUE with OPERATOR one of "
                                 f"{', '.join(OPS)}; got {value!r}")
    return {"op": op.replace("-", "_"), "value": text}


def _date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise click.BadParameter(f"not a date (YYYY-MM-DD[THH:MM]): {value!r}") from None


def _last(value: str | None) -> float | None:
    if value is None:
        return None
    if value == "today":
        now = time.localtime()
        return time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 0, 0, 0, 0, 0, -1))
    if len(value) < 2 or value[-1] not in UNITS or not value[:-1].isdigit():
        raise click.BadParameter(f"expected today or N followed by m, h, d or w: {value!r}")
    return time.time() - int(value[:-1]) * UNITS[value[-1]]


def filter_options(fn: Any) -> Any:
    """The search filters shared by `search` and `bulk`."""
    options = [
        click.option("-q", "--quarantine", "quarantines", multiple=True,
                     help="Search this quarantine (repeatable; default all)."),
        click.option("--from", "received_from", help="Received on or after (YYYY-MM-DD[THH:MM])."),
        click.option("--to", "received_to", help="Received before (YYYY-MM-DD[THH:MM])."),
        click.option("--last", help="Received in the last N m/h/d/w, or today."),
        click.option("--sender", metavar="OP:VALUE", help="Envelope sender filter."),
        click.option("--recipient", metavar="OP:VALUE", help="Envelope recipient filter."),
        click.option("--subject", metavar="OP:VALUE", help="Subject filter."),
        click.option("--reason", metavar="OP:VALUE",
                     help="Quarantine reason (virus name, outbreak rule, filter name)."),
        click.option("--attachment", metavar="OP:VALUE", help="Attachment name filter."),
        click.option("--attachment-min", type=click.IntRange(0), help="Attachment bytes >= N."),
        click.option("--attachment-max", type=click.IntRange(0), help="Attachment bytes <= N."),
        click.option("--gateway", help="Originating gateway (host name or IP)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_query(kw: dict[str, Any], *, sort: str = "received", order: str = "desc",
                page_size: int = 100, page: int = 1) -> dict[str, Any]:
    received_from = _date(kw.get("received_from"))
    last = _last(kw.get("last"))
    if last is not None:
        received_from = max(received_from or 0.0, last)
    return {
        "quarantines": list(kw.get("quarantines") or ()),
        "received_from": received_from, "received_to": _date(kw.get("received_to")),
        "sender": _text_filter(kw.get("sender")),
        "recipient": _text_filter(kw.get("recipient")),
        "subject": _text_filter(kw.get("subject")), "reason": _text_filter(kw.get("reason")),
        "attachment_name": _text_filter(kw.get("attachment")),
        "attachment_min_size": kw.get("attachment_min"),
        "attachment_max_size": kw.get("attachment_max"), "gateway": kw.get("gateway"),
        "order_by": sort.replace("-", "_"), "order_dir": order,
        "limit": page_size, "offset": (page - 1) * page_size,
    }


def _exit_of(m: dict[str, Any]) -> str:
    exits = [q["scheduled_exit"] for q in m["quarantines"]
             if q["state"] == "held" and q["scheduled_exit"]]
    return format_time(min(exits)) if exits else "-"


@quarantine.command("search")
@filter_options
@click.option("--sort", type=click.Choice(["received", "sender", "subject", "scheduled-exit",
                                           "size"]), default="received", show_default=True)
@click.option("--asc", "order", flag_value="asc", help="Ascending order.")
@click.option("--desc", "order", flag_value="desc", default=True, help="Descending (default).")
@click.option("--page-size", type=click.Choice(["20", "50", "100", "250"]), default="20",
              show_default=True)
@click.option("--page", type=click.IntRange(1), default=1, show_default=True)
@click.option("--saved", metavar="NAME", help="Run a saved search instead of the filters.")
@click.option("--save", metavar="NAME", help="Save these filters under NAME.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_search(ctx: click.Context, sort: str, order: str, page_size: str, page: int,
                      saved: str | None, save: str | None, as_json: bool, **kw: Any) -> None:
    """Search held messages: filters, sort, a page of results and the total."""
    query = build_query(kw, sort=sort, order=order, page_size=int(page_size), page=page)
    if save:  # with --json, said on stderr: the output is the JSON alone
        click.echo(request(ctx, "quarantine.saved", {"op": "save", "name": save,
                                                      "query": query})["text"],
                   err=as_json)
    args: dict[str, Any] = {"query": query}
    if saved:
        args = {"saved": saved, "limit": int(page_size), "offset": (page - 1) * int(page_size)}
    data = request(ctx, "quarantine.search", args)["data"]
    if print_json(as_json, data):
        return
    first = data["offset"] + 1 if data["messages"] else 0
    last = data["offset"] + len(data["messages"])
    from rich.console import Console
    from rich.table import Table

    found = _total(data)
    table = Table(title=rich_text(f"{found} messages found, showing {first}-{last}"),
                  title_justify="left")
    for col in ("MID", "Received", "Scheduled Exit", "Sender", "Subject", "Size",
                "Gateway", "In quarantines (reason)"):
        table.add_column(col, overflow="fold")
    for m in data["messages"]:
        table.add_row(*map(rich_text, (
            m["id"], format_time(m["received_at"]), _exit_of(m), m["sender"], m["subject"],
            f"{m['size'] / 1024:.1f}K", m["origin_host"], reasons(m["quarantines"]))))
    Console(width=max(160, Console().width)).print(table)


@quarantine.command("bulk")
@click.argument("action", type=click.Choice(["release", "delete", "delay", "move", "copy"]))
@filter_options
@click.option("--saved", metavar="NAME", help="Act on what a saved search finds.")
@click.option("--dry-run", is_flag=True, help="List what would be done; change nothing.")
@click.option("--in", "only_in", metavar="QUARANTINE",
              help="Act in this quarantine only (release/delete/delay; move: the source).")
@click.option("--by", "delay", type=click.Choice(["8h", "24h", "48h", "1w"]), default="24h",
              show_default=True, help="delay: by how much.")
@click.option("--target", metavar="QUARANTINE", help="move: the target policy quarantine.")
@click.option("--address", metavar="ADDRESS", help="copy: where to send copies.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_bulk(ctx: click.Context, action: str, saved: str | None, dry_run: bool,
                    only_in: str | None, delay: str, target: str | None, address: str | None,
                    as_json: bool, **kw: Any) -> None:
    """Apply ACTION to every message a search finds (see --dry-run)."""
    response = request(ctx, "quarantine.bulk", {
        "query": build_query(kw), "saved": saved, "action": action, "dry_run": dry_run,
        "quarantine": only_in, "delay": delay, "target": target, "address": address})
    data = response["data"]
    if print_json(as_json, data):
        return
    if data["dry_run"]:
        click.echo(f"Dry run: {action} would act on {data['count']} messages:")
        for mid in data["mids"]:
            click.echo(f"  would {action} MID {mid}")
        return
    for r in data["results"]:
        echo(r["text"])
    echo(response["text"])


@quarantine.command("saved")
@click.argument("op", type=click.Choice(["list", "delete"]), default="list")
@click.argument("name", required=False)
@click.pass_context
def quarantine_saved(ctx: click.Context, op: str, name: str | None) -> None:
    """List saved searches, or delete one (save with `search --save NAME`)."""
    if op == "delete":
        if not name:
            raise click.UsageError("delete needs a NAME")
        click.echo(request(ctx, "quarantine.saved", {"op": "delete", "name": name})["text"])
        return
    data = request(ctx, "quarantine.saved", {"op": "list"})["data"]
    if not data:
        click.echo("No saved searches.")
    for saved_name, query in data.items():
        echo(f"{saved_name}: {query}")


@quarantine.command("delay")
@click.argument("mids", type=int, nargs=-1, required=True)
@click.option("--by", "delay", type=click.Choice(["8h", "24h", "48h", "1w"]), required=True)
@click.option("-q", "--quarantine", "name", default=None)
@click.pass_context
def quarantine_delay(ctx: click.Context, mids: tuple[int, ...], delay: str,
                     name: str | None) -> None:
    """Delay the scheduled exit of messages."""
    for mid in mids:
        echo(request(ctx, "quarantine.delay", {"mid": mid, "delay": delay,
                                                "quarantine": name})["text"])


@quarantine.command("move")
@click.argument("mids", type=int, nargs=-1, required=True)
@click.option("--from", "source", required=True, metavar="QUARANTINE")
@click.option("--to", "target", required=True, metavar="QUARANTINE")
@click.pass_context
def quarantine_move(ctx: click.Context, mids: tuple[int, ...], source: str,
                    target: str) -> None:
    """Move messages to another policy quarantine (exit and reason are kept)."""
    for mid in mids:
        echo(request(ctx, "quarantine.move", {"mid": mid, "source": source,
                                               "target": target})["text"])


@quarantine.command("copy")
@click.argument("mids", type=int, nargs=-1, required=True)
@click.option("--to", "address", required=True, metavar="ADDRESS")
@click.pass_context
def quarantine_copy(ctx: click.Context, mids: tuple[int, ...], address: str) -> None:
    """Send a copy to ADDRESS through the originating gateway; the message stays held."""
    for mid in mids:
        echo(request(ctx, "quarantine.copy", {"mid": mid, "address": address})["text"])


@quarantine.command("rescan")
@click.argument("mid", type=int)
@click.option("--dry-run", "dry_run", is_flag=True, required=True,
              help="Required: the gateway scans the held copy and nothing changes.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_rescan(ctx: click.Context, mid: int, dry_run: bool, as_json: bool) -> None:
    """Have the originating gateway scan a held message with today's filters, anti-virus
    and outbreak rules, and show its verdict per stage; nothing is released or changed."""
    if not dry_run:
        raise click.UsageError("only a dry run exists: add --dry-run")
    data = request(ctx, "quarantine.rescan", {"mid": mid, "dry_run": True})["data"]
    if print_json(as_json, data):
        return
    # What the gateway says quotes the mail (filter hits, virus names): shown escaped.
    click.echo(f"MID {mid}: dry rescan by {printable(data['gateway'])}: "
               f"{printable(data['action']).upper()}")
    for v in data["verdicts"]:
        click.echo(f'  Verdict:  "{printable(v["quarantine"])}" ({printable(v["reason"])})')
    if data.get("reason"):
        click.echo(f"  Reason:   {printable(data['reason'])}")
    if data.get("unscannable"):
        click.echo(f"  Unscannable: {printable(data['unscannable'])}")
    for stage in data["stages"]:
        line = f"  Stage {printable(stage['stage'])}: {printable(stage['outcome']).upper()}"
        if stage["hits"]:
            line += f"; hits: {printable(', '.join(stage['hits']))}"
        if stage["misses"]:
            line += f"; misses: {printable(', '.join(stage['misses']))}"
        click.echo(line)
    click.echo("Nothing was released, stored or counted.")


@quarantine.command("expire")
@click.pass_context
def quarantine_expire(ctx: click.Context) -> None:
    """Apply default actions to every message past its scheduled exit, now."""
    click.echo(request(ctx, "quarantine.expire")["text"])


@quarantine.command("config")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def quarantine_config(ctx: click.Context, as_json: bool) -> None:
    """The quarantines and their settings (quarantineconfig)."""
    data = request(ctx, "quarantine.config")["data"]
    if print_json(as_json, data):
        return
    rows = [["Name", "Type", "Retention", "Default", "Free up space"]]
    rows += [[name, "builtin" if q["builtin"] else "custom", duration(q["retention_s"]),
              q["default_action"], "yes" if q["free_up_space"] else "no"]
             for name, q in data["quarantines"].items()]
    for line in columns(rows):
        click.echo(line)


@click.group()
def audit() -> None:
    """The manager's audit trail of quarantine actions and views."""


@audit.command("verify")
@click.pass_context
def audit_verify(ctx: click.Context) -> None:
    """Check the hash chain; exit 1 if a record was removed, edited or inserted."""
    click.echo(request(ctx, "audit.verify")["text"])


@audit.command("tail")
@click.option("-n", "--lines", "limit", type=click.IntRange(1, 10000), default=20)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit_tail(ctx: click.Context, limit: int, as_json: bool) -> None:
    """The latest audit records."""
    data = request(ctx, "audit.tail", {"limit": limit})["data"]
    if print_json(as_json, data):
        return
    for r in data:
        echo(f"{r['seq']:>6} {format_time(r['at'])} {r['actor']}@{r['origin']} "
             f"{r['action']} {json.dumps(r['detail'], sort_keys=True)}")


def register(cli: click.Group) -> None:
    """Add the `quarantine` and `audit` groups to the `pvoq cli` group."""
    cli.add_command(quarantine)
    cli.add_command(audit)
