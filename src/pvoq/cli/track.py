"""`pvoq cli -c MANAGER track` and `logsub status|pull`: message tracking and the log subscription.

`track` asks the manager's `track` command (its tracking index, fed by the
log subscription) and prints each message's path in one view: the gateway's
ICID and MID, each scan stage's verdict, the `the.cpq.host` DCID, the
manager's MID and quarantine, the release, the gateway's new MID (`MID
originally N`), the downstream DCID and its reply; then every line of the
path in time order. `--json` prints the answer as it came.

Every string shown came from mail or from a gateway's log: control
characters, line separators and terminal escapes are shown as `\\xNN` /
`\\uNNNN`, never sent to the terminal (click prints text as it is: no markup
is interpreted).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import click

from pvoq.cli.client import print_json, request
from pvoq.cli.render import safe
from pvoq.maillog.writer import format_time

# C0 and C1 controls, DEL, line and paragraph separators, bidi overrides and isolates
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MID_PREFIX = re.compile(r"^MID \d+ ")


def parse_when(value: str, option: str) -> float:
    """A time given to --since/--until: `2h` (ago), an epoch, or an ISO date and time in
    local time (`2026-11-30`, `2026-11-30T15:04`)."""
    text = value.strip()
    if m := _RELATIVE.fullmatch(text):
        return time.time() - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(text) if text.replace(".", "", 1).isdigit() else \
            dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise click.BadParameter(f"{value!r}: give 2h, 30m, 1d (ago), an epoch, or a date "
                                 "and time such as 2026-11-30T15:04", param_hint=option) from None


def _deliveries(deliveries: list[dict[str, Any]]) -> list[str]:
    out = []
    for d in deliveries:
        where = safe(d.get("destination") or "?")
        if d.get("address") and d.get("destination") != f"{d['address']}:{d['port']}":
            where += f" ({safe(d['address'])} port {safe(d['port'])})"
        reply = safe(d["reply"]) if d.get("reply") else "no reply logged"
        out.append(f"Delivery: DCID {safe(d['dcid'])} to {where}: {reply}")
    return out


def _texts(label: str, texts: list[str]) -> list[str]:
    return [f"{label}: " + "; ".join(safe(_MID_PREFIX.sub("", t)) for t in texts)] if texts else []


def render(journey: dict[str, Any], number: int, total: int) -> list[str]:
    """The lines `track` prints for one journey."""
    out = [f"Message {number} of {total}"]
    gw = journey.get("gateway")
    first = gw or (journey["manager"][0] if journey["manager"] else {})
    if gw is not None:
        out.append(f"  Gateway {safe(gw['source'])}: ICID {safe(gw['icid'])}, MID "
                   f"{safe(gw['mid'])}, received {format_time(gw['first'] or 0)}")
        if gw.get("connection"):
            out.append(f"    {safe(gw['connection'])}")
    out.append(f"    From: <{safe(first.get('sender') or '')}>  To: "
               + ", ".join(f"<{safe(r)}>" for r in first.get("recipients", [])))
    out.append(f"    Subject: \"{safe(first.get('subject') or '')}\"  Message-ID: "
               f"{safe(first.get('message_id') or '-')}")
    if gw is not None:
        out += [f"    {line}" for line in _texts("Verdicts", gw["verdicts"])
                + _texts("Quarantine", gw["quarantine"]) + _deliveries(gw["deliveries"])]
    for m in journey["manager"]:
        origin = m.get("origin") or {}
        came = f", from {safe(origin['host'])} MID {safe(origin['mid'])}" if origin else ""
        out.append(f"  Manager {safe(m['source'])}: MID {safe(m['mid'])} (ICID "
                   f"{safe(m['icid'])}){came}")
        out += [f"    {line}" for line in _texts("Quarantine", m["quarantine"])
                + _deliveries(m["deliveries"])]
    for r in journey["releases"]:
        origin = r.get("origin") or {}
        out.append(f"  Release on {safe(r['source'])}: MID {safe(r['mid'])} (MID originally "
                   f"{safe(origin.get('mid'))}), ICID {safe(r['icid'])}")
        out += [f"    {line}" for line in _texts("Verdicts", r["verdicts"])
                + _deliveries(r["deliveries"])]
    out.append("  Path:")
    width = max((len(line["source"]) for line in journey["lines"]), default=0)
    out += [f"    {format_time(line['time'])} {safe(line['source']).ljust(width)}  "
            f"{safe(line['text'])}" for line in journey["lines"]]
    return out


@click.command("track")
@click.option("--sender", default=None,
              help="Envelope sender: a whole address (exact, any case), or text it contains.")
@click.option("--recipient", default=None,
              help="A recipient: a whole address (exact, any case), or text it contains.")
@click.option("--subject", default=None, help="Subject contains this.")
@click.option("--message-id", "message_id", default=None, help="Message-ID (with or without <>).")
@click.option("--mid", type=click.IntRange(1), default=None, help="A gateway's MID.")
@click.option("--gateway", default=None, help="Only this gateway (with --mid: its MID).")
@click.option("--manager-mid", "manager_mid", type=click.IntRange(1), default=None,
              help="The manager's MID.")
@click.option("--since", default=None, help="Received at or after: 2h, 1d, 2026-11-30T15:04.")
@click.option("--until", default=None, help="Received at or before (same forms).")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def track_cmd(ctx: click.Context, sender: str | None, recipient: str | None,
              subject: str | None, message_id: str | None, mid: int | None,
              gateway: str | None, manager_mid: int | None, since: str | None,
              until: str | None, limit: int, as_json: bool) -> None:
    """Follow messages from gateway to manager and back (the manager's tracking index)."""
    args = {"sender": sender, "recipient": recipient, "subject": subject,
            "message_id": message_id, "mid": mid, "gateway": gateway,
            "manager_mid": manager_mid, "limit": limit,
            "since": None if since is None else parse_when(since, "--since"),
            "until": None if until is None else parse_when(until, "--until")}
    journeys = request(ctx, "track", {k: v for k, v in args.items() if v is not None}
                       )["data"]["journeys"]
    if print_json(as_json, journeys):
        return
    if not journeys:
        click.echo("No messages found.")
        return
    for n, journey in enumerate(journeys, 1):
        click.echo("\n".join(render(journey, n, len(journeys))))


@click.group("logsub")
def logsub_group() -> None:
    """The manager's subscription to its gateways' mail_logs."""


def _status_lines(data: dict[str, Any]) -> list[str]:
    state = "enabled" if data["enabled"] else "disabled"
    out = [f"Log subscription {state}: every {data['interval_seconds']:g}s, at most "
           f"{data['chunk_lines']} lines / {data['chunk_bytes']} bytes a pull"]
    if "retention_days" in data:    # a manager of an earlier version does not say
        kept = (f"{data['retention_days']:g} days" if data["retention_days"] > 0
                else "forever")
        out.append(f"  tracking data kept {kept}; copies roll over past "
                   f"{data['max_file_size']} bytes")
    for g in data["gateways"]:
        pulled = format_time(g["last_pull"]) if g["last_pull"] else "never"
        last = format_time(g["last_line_time"]) if g["last_line_time"] else "none"
        out.append(f"  {safe(g['name'])} ({safe(g['host'])}): {g['lines']} lines, last pull "
                   f"{pulled}, last line {last}")
        if g["last_error"]:
            when = format_time(g["last_error_time"]) if g["last_error_time"] else "?"
            now = "failing" if g.get("failing") else "last error"
            out.append(f"    {now} ({when}): {safe(g['last_error'])}")
    own = data["manager"]
    out.append(f"  {safe(own['name'])} (this manager's own mail_logs): {own['lines']} lines")
    return out


@logsub_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def logsub_status(ctx: click.Context, as_json: bool) -> None:
    """Each gateway: last pull, last line, lines kept, last error."""
    data = request(ctx, "logsub.status")["data"]
    if not print_json(as_json, data):
        click.echo("\n".join(_status_lines(data)))


@logsub_group.command("pull")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def logsub_pull(ctx: click.Context, as_json: bool) -> None:
    """Pull from every gateway now (one chunk each), then show the status."""
    data = request(ctx, "logsub.pull")["data"]
    if not print_json(as_json, data):
        click.echo("\n".join(_status_lines(data)))


def register(cli: click.Group) -> None:
    """Add this module's commands to the `pvoq cli` group."""
    for cmd in (track_cmd, logsub_group):
        cli.add_command(cmd)
