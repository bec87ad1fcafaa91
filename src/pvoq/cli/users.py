"""`pvoq cli -c FILE user add|passwd|list|delete|role|whoami`: the appliance's console users.

A password is read from the terminal without echo (asked twice), or from
standard input with `--password-stdin` (its first line); never from argv.
It reaches the appliance over the admin socket, whose peer credentials say
who asks: only an administrator may change users (`users.permissions`).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from pvoq.cli.client import fail, print_json, request
from pvoq.cli.render import cell, safe

ROLES = ("admin", "operator", "helpdesk", "read-only", "custom")


def read_password(from_stdin: bool) -> str:
    """The new password: stdin's first line with *from_stdin*, else typed twice, unechoed."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if not password:
            fail("pvoq: --password-stdin: standard input holds no password", 2)
        return password
    if not sys.stdin.isatty():
        fail("pvoq: no terminal to read the password from: use --password-stdin", 2)
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True,
                            err=True)
    return str(password)


def _quarantines(role: str, quarantines: str | None) -> list[str] | None:
    if quarantines is None:
        return None
    return [q.strip() for q in quarantines.split(",") if q.strip()]


@click.group()
def user() -> None:
    """The appliance's users (web console, API tokens' owners, bound Unix accounts)."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--quarantines", default=None, metavar="A,B",
              help="The quarantines a custom role is granted.")
@click.option("--unix-user", default=None,
              help="Bind this Unix account: its `pvoq cli` acts as this user.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_context
def user_add(ctx: click.Context, name: str, role: str, quarantines: str | None,
             unix_user: str | None, password_stdin: bool) -> None:
    """Add user NAME with a role; the password is asked for (never an argument)."""
    args: dict[str, Any] = {"name": name, "role": role,
                            "quarantines": _quarantines(role, quarantines),
                            "unix_user": unix_user,
                            "password": read_password(password_stdin)}
    click.echo(request(ctx, "user.add", args)["text"])


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_context
def user_passwd(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Set NAME's password (its console sessions end)."""
    click.echo(request(ctx, "user.passwd", {"name": name,
                                            "password": read_password(password_stdin)})["text"])


@user.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@click.option("--quarantines", default=None, metavar="A,B",
              help="The quarantines a custom role is granted.")
@click.option("--unix-user", default=None, help="Bind this Unix account ('' unbinds).")
@click.pass_context
def user_role(ctx: click.Context, name: str, role: str, quarantines: str | None,
              unix_user: str | None) -> None:
    """Give NAME another ROLE (its console sessions end)."""
    args: dict[str, Any] = {"name": name, "role": role,
                            "quarantines": _quarantines(role, quarantines)}
    if unix_user is not None:
        args["unix_user"] = unix_user or None
    click.echo(request(ctx, "user.role", args)["text"])


@user.command("delete")
@click.argument("name")
@click.pass_context
def user_delete(ctx: click.Context, name: str) -> None:
    """Delete user NAME (its console sessions end)."""
    click.echo(request(ctx, "user.delete", {"name": name})["text"])


@user.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def user_list(ctx: click.Context, as_json: bool) -> None:
    """The users: name, role, granted quarantines, bound Unix account, lockout."""
    data = request(ctx, "user.list")["data"]
    if print_json(as_json, data):
        return
    if not data["users"]:
        click.echo("No users.")
        return
    click.echo(f"{'User':<21}{'Role':<11}{'Quarantines':<21}{'Unix user':<13}Locked")
    for u in data["users"]:
        granted = ",".join(u["quarantines"]) if u["quarantines"] else "-"
        click.echo(f"{cell(u['name'], 21)}{cell(u['role'], 11)}{cell(granted, 21)}"
                   f"{cell(u['unix_user'] or '-', 13)}{'yes' if u['locked_until'] else '-'}")


@user.group("token")
def user_token() -> None:
    """A user's REST API tokens: each acts with its user's role."""


@user_token.command("add")
@click.argument("name")
@click.option("--label", default="", help="What the token is for (shown in list).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def user_token_add(ctx: click.Context, name: str, label: str, as_json: bool) -> None:
    """Make an API token for user NAME; its secret is printed once."""
    answer = request(ctx, "user.token.add", {"name": name, "label": label})
    if not print_json(as_json, answer["data"]):
        click.echo(answer["text"])


@user_token.command("list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def user_token_list(ctx: click.Context, name: str, as_json: bool) -> None:
    """User NAME's API tokens: id, label, when made (never the secret)."""
    data = request(ctx, "user.token.list", {"name": name})["data"]
    if print_json(as_json, data):
        return
    if not data["tokens"]:
        click.echo(f"User {safe(name)} has no API token.")
        return
    click.echo(f"{'Id':<10}{'Created (UTC)':<21}Label")
    for t in data["tokens"]:
        made = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t["created"]))
        click.echo(f"{t['id']:<10}{made:<21}{safe(t['label'] or '-')}")


@user_token.command("revoke")
@click.argument("name")
@click.argument("token_id")
@click.pass_context
def user_token_revoke(ctx: click.Context, name: str, token_id: str) -> None:
    """Revoke API token TOKEN_ID of user NAME."""
    click.echo(request(ctx, "user.token.revoke", {"name": name, "id": token_id})["text"])


@user.command("whoami")
@click.pass_context
def user_whoami(ctx: click.Context) -> None:
    """Who this command runs as, to the appliance (its admin socket's word)."""
    click.echo(request(ctx, "user.whoami")["text"])


def register(cli: click.Group) -> None:
    """Add this module's commands to the `pvoq cli` group."""
    cli.add_command(user)
