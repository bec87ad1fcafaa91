"""`pvoq cli -c FILE spool list|show`: the spool, read from its log (no running appliance needed).

The spool is an append-only log (see `spool.log`), so `ls` no longer shows
one file per message; these commands are how an operator looks inside. They
open the log read-only: safe while the appliance runs (they see what was
committed when they started) and while it is stopped (after a crash, before a
restart, to see what the restart will find).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pvoq.cli.client import config, print_json
from pvoq.cli.render import echo

if TYPE_CHECKING:
    from pvoq.spool.store import Spool


def _open(ctx: click.Context) -> Spool:
    from pvoq.spool.store import Spool  # imported late: most commands never open the spool

    cfg = config(ctx)
    directory = Path(cfg.data_dir) / "spool"
    if not directory.is_dir():
        click.echo(f"pvoq: no spool yet at {directory}", err=True)
        sys.exit(1)
    return Spool(directory, readonly=True)


@click.group("spool")
def spool_group() -> None:
    """The messages in this appliance's spool (read-only)."""


@spool_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
def spool_list(ctx: click.Context, as_json: bool) -> None:
    """Every spooled message: MID, state, age, size, sender, recipients and where they go."""
    spool = _open(ctx)
    entries = spool.recover()
    damaged = spool.damaged
    spool.close()
    rows: list[dict[str, Any]] = [{"mid": e.mid, "state": e.state, "received": e.received, "size": e.size,
             "sender": e.sender,
             "recipients": [{"rid": r.rid, "address": r.address, "host": r.host,
                             "status": r.status, "attempts": r.attempts} for r in e.recipients]}
            for e in entries]
    if print_json(as_json, {"messages": rows, "damaged": damaged}):
        return
    for problem in damaged:
        click.echo(f"Warning: {problem}", err=True)
    if not rows:
        click.echo("The spool is empty.")
        return
    now = time.time()
    click.echo(f"{'MID':>8}  {'State':<9} {'Age':>7} {'Bytes':>8}  Sender -> Recipients")
    for row in rows:
        rcpts = ", ".join(f"{r['address']} ({r['host'] or '-'}, {r['status']})"
                          for r in row["recipients"])
        age = int(max(0, now - row["received"]))
        echo(f"{row['mid']:>8}  {row['state']:<9} {age:>6}s {row['size']:>8}  "
             f"<{row['sender']}> -> {rcpts}")
    click.echo(f"{len(rows)} messages in the spool.")


@spool_group.command("show")
@click.argument("mid", type=int)
@click.option("--body", "with_body", is_flag=True, help="Print the message itself after the entry.")
@click.pass_context
def spool_show(ctx: click.Context, mid: int, with_body: bool) -> None:
    """One message's entry (JSON, as committed) and, with --body, the message."""
    spool = _open(ctx)
    try:
        data = spool.log.entry(mid)
        if data is None:
            click.echo(f"MID {mid} is not in the spool.", err=True)
            sys.exit(1)
        click.echo(json.dumps(json.loads(data), indent=2))
        if with_body:
            click.echo("")
            echo(spool.read_body(mid).decode("utf-8", "replace"), multiline=True)
            sys.stdout.buffer.flush()
    finally:
        spool.close()


def register(cli: click.Group) -> None:
    """Add this module's commands to the `pvoq cli` group."""
    cli.add_command(spool_group)
