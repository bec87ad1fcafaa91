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

import click

from pvoq.cli.operator import _as_json, operator


def _open(ctx: click.Context):  # noqa: ANN202 (a Spool; imported late like the other commands)
    from pvoq.cli.main import load_or_exit
    from pvoq.spool.store import Spool

    cfg = load_or_exit(ctx.obj["config"])
    directory = Path(cfg.data_dir) / "spool"
    if not directory.is_dir():
        click.echo(f"pvoq: no spool yet at {directory}", err=True)
        sys.exit(1)
    return Spool(directory, readonly=True)


@operator.group("spool")
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
    rows = [{"mid": e.mid, "state": e.state, "received": e.received, "size": e.size,
             "sender": e.sender,
             "recipients": [{"rid": r.rid, "address": r.address, "host": r.host,
                             "status": r.status, "attempts": r.attempts} for r in e.recipients]}
            for e in entries]
    if _as_json(as_json, {"messages": rows, "damaged": damaged}):
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
        click.echo(f"{row['mid']:>8}  {row['state']:<9} {age:>6}s {row['size']:>8}  "
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
            sys.stdout.flush()
            sys.stdout.buffer.write(spool.read_body(mid))
            sys.stdout.buffer.flush()
    finally:
        spool.close()
