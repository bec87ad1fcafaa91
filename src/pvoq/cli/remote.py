"""`pvoq cli` commands of the SSH link and the listener list.

Manager: `gateway add|list|remove|test|pubkey`. Gateway: `ssh token|authorize|show`.
Both: `listeners [--all]` (the hidden `cpq_listener` only with `--all`).
`register()` adds them to the `pvoq cli` group.
"""

from __future__ import annotations

from pathlib import Path

import click

from pvoq.cli.client import print_json, request
from pvoq.cli.render import echo


@click.command("listeners")
@click.option("--all", "show_all", is_flag=True, help="Include the hidden cpq_listener.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def listeners(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """Listeners with interface, port and sender groups (as `listenerconfig` lists them)."""
    data = request(ctx, "listeners", {"all": show_all})["data"]
    rows = data["listeners"]
    if print_json(as_json, rows):
        return
    if not rows:  # e.g. a manager: its one listener, the cpq_listener, is hidden
        hidden = data.get("not_shown", 0)
        click.echo(f"No listeners ({hidden} hidden: listeners --all)." if hidden
                   else "No listeners.")
        return
    click.echo("Currently configured listeners:")
    for i, r in enumerate(rows, 1):
        hidden = " (hidden)" if r["hidden"] else ""
        click.echo(f"{i}. {r['name']} ({r['interface']}: {r['address']}/{r['port']}) "
                   f"{r['protocol']} {r['type']}{hidden}  sender groups: "
                   f"{', '.join(r['sender_groups'])}")


@click.group("gateway")
def gateway_group() -> None:
    """The manager's SSH link to its gateways."""


@gateway_group.command("add")
@click.argument("name")
@click.option("--host", default=None, help="SSH address (default: the gateway's CPQ address).")
@click.option("--ssh-port", type=click.IntRange(1, 65535), default=None)
@click.option("--token", default=None, help="One-time token from `ssh token` on the gateway.")
@click.option("--fingerprint", default=None,
              help="Refuse unless the host key has this SHA256 fingerprint.")
@click.option("--replace", is_flag=True, help="Accept a host key that differs from the pin.")
@click.pass_context
def gateway_add(ctx: click.Context, name: str, host: str | None, ssh_port: int | None,
                token: str | None, fingerprint: str | None, replace: bool) -> None:
    """Pin NAME's SSH host key (trust on first use) and install the manager's key."""
    click.echo(request(ctx, "gateway.add", {
        "name": name, "host": host, "ssh_port": ssh_port, "token": token,
        "fingerprint": fingerprint, "replace": replace})["text"])


@gateway_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def gateway_list(ctx: click.Context, as_json: bool) -> None:
    """Gateways, their SSH pins, the last lookup and any application fault."""
    rows = request(ctx, "gateway.list")["data"]["gateways"]
    if print_json(as_json, rows):
        return
    for r in rows:
        echo(f"{r['name']}: CPQ {r['cpq_address']}:{r['cpq_port']}  "
             f"SSH {r['ssh'] or 'not added'}  "
             f"{r['fingerprint'] or ''}  looked up: {r['looked_up'] or '-'}"
             + (f"  FAULT: {r['fault']}" if r["fault"] else ""))


@gateway_group.command("remove")
@click.argument("name")
@click.pass_context
def gateway_remove(ctx: click.Context, name: str) -> None:
    """Forget NAME's SSH pin; releases go to its configured address."""
    click.echo(request(ctx, "gateway.remove", {"name": name})["text"])


@gateway_group.command("test")
@click.argument("name")
@click.pass_context
def gateway_test(ctx: click.Context, name: str) -> None:
    """Ask NAME over SSH where its PVO listener is, now."""
    click.echo(request(ctx, "gateway.test", {"name": name})["text"])


@gateway_group.command("pubkey")
@click.pass_context
def gateway_pubkey(ctx: click.Context) -> None:
    """The manager's public key, for `ssh authorize` on a gateway."""
    click.echo(request(ctx, "gateway.pubkey")["text"])


@click.group("ssh")
def ssh_group() -> None:
    """The gateway's SSH command service."""


@ssh_group.command("token")
@click.option("--ttl", type=click.FloatRange(1), default=3600.0, show_default=True,
              help="Seconds the token stays valid.")
@click.pass_context
def ssh_token(ctx: click.Context, ttl: float) -> None:
    """Issue a one-time token with which a manager may install its key."""
    click.echo(request(ctx, "ssh.token", {"ttl_s": ttl})["text"])


@ssh_group.command("authorize")
@click.argument("key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Whose key it is (default: its comment).")
@click.pass_context
def ssh_authorize(ctx: click.Context, key_file: Path, name: str | None) -> None:
    """Authorize a manager's public key file (`gateway pubkey` on the manager)."""
    text = key_file.read_text().strip()
    parts = text.split()
    click.echo(request(ctx, "ssh.authorize", {
        "key": text, "name": name or (parts[2] if len(parts) > 2 else "")})["text"])


@ssh_group.command("show")
@click.pass_context
def ssh_show(ctx: click.Context) -> None:
    """The service's address, host key fingerprint and authorized keys."""
    data = request(ctx, "ssh.show")["data"]
    click.echo(f"SSH command service on {data['address']} port {data['port']}")
    click.echo(f"Host key: {data['fingerprint']}")
    for k in data["authorized_keys"]:
        click.echo(f"Authorized: {k['fingerprint']} {k['name']}")


def register(cli: click.Group) -> None:
    """Add this module's commands to the `pvoq cli` group."""
    for cmd in (listeners, gateway_group, ssh_group):
        cli.add_command(cmd)
