"""The operator client: one invocation of `pvoq cli -c FILE COMMAND` and its requests.

`pvoq cli` keeps a `ClientContext` on the click context: the configuration
path, the configuration itself (loaded and validated once per invocation, on
first use), and `request()` that sends one command over the appliance's
admin socket (`admin.protocol`). Every command module renders what
`request()` returns; `print_json()` is the `--json` path for scripts.

Exit codes: a configuration that does not load → 2 (one line naming the
file, line and field); no appliance answers → 1 (`pvoq: <role> <host> is
not running: ...`); a command's error → the exit code the appliance gives.
`request_running()` is for `reload`: a file that does not load is the
running appliance's to refuse (exit 1, its configuration kept); exit 2 only
when no appliance answers for it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click

from pvoq.admin.protocol import AdminUnavailable, call
from pvoq.config.errors import ConfigError
from pvoq.config.loader import data_dir_of, load_config
from pvoq.config.model import Config


def load_or_exit(path: str) -> Config:
    """The configuration at *path*, or exit 2 with the configuration error."""
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"pvoq: configuration error: {exc}", err=True)
        sys.exit(2)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print *message* (made `render.safe`: it may quote mail) on stderr and exit with *code*."""
    from pvoq.cli.render import echo  # render imports nothing of the client
    echo(message, err=True, multiline=True)  # an appliance's answer may be several lines
    sys.exit(code)


@dataclass
class ClientContext:
    """One `pvoq cli` invocation: the configuration path, and the configuration once loaded."""

    config_path: str
    _config: Config | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        """The configuration, loaded (or exit 2) on first use and then kept."""
        if self._config is None:
            self._config = load_or_exit(self.config_path)
        return self._config

    def request_running(self, command: str,
                        args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send *command* to the appliance running from this file, even if the file is broken.

        A file that loads: as `request`. One that does not: *command* goes to
        the admin socket in the file's `<data_dir>` (the running appliance
        answers with its own verdict, e.g. a refused reload); exit 2 with the
        configuration error when that cannot be found or nothing answers there.
        """
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as error:
                return self._request_unloaded(error, command, args)
        return self.request(command, args)

    def _request_unloaded(self, error: ConfigError, command: str,
                          args: dict[str, Any] | None) -> dict[str, Any]:
        data_dir = data_dir_of(self.config_path)
        try:
            if data_dir is None:
                raise AdminUnavailable("no <data_dir> to find it by")
            response = call(data_dir / "admin.sock", command, args)
        except AdminUnavailable:
            fail(f"pvoq: configuration error: {error}", 2)
        if not response.get("ok"):
            fail(response.get("error", "command failed"), int(response.get("exit", 1)))
        return response

    def request(self, command: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send *command* to the running appliance; its response, or exit as module doc says."""
        cfg = self.config
        try:
            response = call(cfg.admin_socket, command, args)
        except AdminUnavailable as exc:
            fail(f"pvoq: {cfg.role} {cfg.hostname} is not running: {exc}")
        if not response.get("ok"):
            error = str(response.get("error", "command failed"))
            owner = owner_of(command)
            if error.startswith("Unknown command:") and owner not in (None, cfg.role):
                error = (f"{command} runs on the {owner}: {cfg.hostname} is a {cfg.role} "
                         f"(pvoq cli -c <the {owner}'s configuration> ...)")
            fail(error, int(response.get("exit", 1)))
        return response


def owner_of(command: str) -> str | None:
    """The role whose appliance alone answers *command* (`quarantine.list`: the manager),
    from the command sets each role registers; None for a command both answer."""
    # Imported here: only a refused command needs them (the role wiring registers
    # these sets; the appliance's own, such as `status`, are on both).
    from pvoq.gateway.commands import PipelineCommands, PvoCheckCommands, WorkQueueCommands
    from pvoq.gateway.enable import PvoModeCommands
    from pvoq.logsub.commands import LogChunkCommands, LogSubscriptionCommands
    from pvoq.quarantine.commands import QuarantineCommands
    from pvoq.quarantine.definitions import QuarantineConfigCommands
    from pvoq.quarantine.overview import OverviewCommands
    from pvoq.remote.commands import GatewayLinkCommands, ManagerLinkCommands

    for role, sets in (("manager", (QuarantineCommands, ManagerLinkCommands,
                                    QuarantineConfigCommands, OverviewCommands,
                                    LogSubscriptionCommands)),
                       ("gateway", (PipelineCommands, WorkQueueCommands, PvoCheckCommands,
                                    PvoModeCommands, GatewayLinkCommands, LogChunkCommands))):
        if any(command in s.command_names() for s in sets):
            return role
    return None


def client_of(ctx: click.Context) -> ClientContext:
    """The `ClientContext` the `pvoq cli` group put on *ctx* (or on one of its parents)."""
    client = ctx.find_object(ClientContext)
    if client is None:
        raise click.UsageError("operator commands run under `pvoq cli -c FILE`")
    return client


def config(ctx: click.Context) -> Config:
    """This invocation's configuration (loaded once)."""
    return client_of(ctx).config


def request(ctx: click.Context, command: str, args: dict[str, Any] | None = None) -> Any:
    """Send *command* with *args* to the running appliance; see `ClientContext.request`."""
    return client_of(ctx).request(command, args)


def print_json(as_json: bool, data: Any) -> bool:
    """Print *data* as JSON (for scripts) when `--json` was given; say whether it was."""
    if as_json:
        click.echo(json.dumps(data, indent=2))
    return as_json
