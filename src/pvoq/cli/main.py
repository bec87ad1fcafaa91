"""`pvoq`: init, run a role, operate it, and the demo.

Exit codes: 0 success; 1 a check or command failed; 2 bad usage or bad
configuration (one line naming the file, line and field).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click

from pvoq import __version__
from pvoq.cli import doctor
from pvoq.cli.client import ClientContext, load_or_exit
from pvoq.config.errors import ConfigError
from pvoq.errors import OperatorError
from pvoq.fsutil import restrict_umask


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pvoq")
def main() -> None:
    """pvoq: a centralized Policy, Virus and Outbreak email quarantine."""
    restrict_umask()  # every file a command creates is 0640, every directory 0750, at most


def _host_port(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return default_host, int(value)
    return host or default_host, int(port)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--role", type=click.Choice(["gateway", "manager"]), required=True)
@click.option("--hostname", required=True, help="This appliance's name (the CPQ certificate CN).")
@click.option("--serial", default=None, help="Serial number (default: derived from hostname).")
@click.option("--ca-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The deployment's CPQ CA directory (created if missing).")
@click.option("--ip", default="127.0.0.1", show_default=True, help="Interface address.")
@click.option("--cpq-port", type=int, default=7025, show_default=True)
@click.option("--smtp-port", type=int, default=25, show_default=True, help="Gateway only.")
@click.option("--domain", "domains", multiple=True, help="Accepted recipient domain (gateway).")
@click.option("--route", "routes", multiple=True, metavar="DOMAIN=HOST:PORT",
              help="SMTP route for clean mail (gateway); DOMAIN may be ALL.")
@click.option("--manager", "manager", default="127.0.0.1:7025", show_default=True,
              metavar="HOST:PORT", help="The manager's cpq_listener (gateway).")
@click.option("--manager-hostname", default=None,
              help="The manager's hostname; its CPQ certificate must name it (gateway).")
@click.option("--gateway", "gateways", multiple=True, metavar="HOSTNAME=IP:PORT",
              help="A gateway this manager serves (manager).")
@click.option("--managed-by", "managed_by", multiple=True, metavar="HOSTNAME=HOST:PORT",
              help="A manager this gateway delivers to, in the order given; repeat for "
                   "several managers sharing one database (gateway; replaces --manager).")
@click.option("--outbreak-url", "outbreak_urls", multiple=True,
              help="A URL host[/path] the outbreak filter quarantines (gateway).")
@click.option("--clamd-socket", default=None, metavar="PATH",
              help="Scan with the clamd listening on this Unix socket (gateway; default: "
                   "the built-in EICAR check only).")
@click.option("--outbreak-rules", default=None, metavar="FILE",
              help="Outbreak rules file, JSON (gateway; reloaded when it changes).")
@click.option("--ssh-port", type=int, default=None,
              help="Run the SSH command service the manager asks for the PVO listener "
                   "(gateway).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus /metrics on 127.0.0.1 at this port; 0: off "
                   "[default: 9325 on a manager, 9326 on a gateway].")
@click.option("--retry-min", type=float, default=60.0, show_default=True)
@click.option("--retry-max", type=float, default=3600.0, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing configuration.")
@click.option("--web-port", type=click.IntRange(0, 65535), default=8443, show_default=True,
              help="Serve the web console over HTTPS on this port of --ip, with a "
                   "certificate from the CA (0: no console).")
def init(directory: Path, role: str, hostname: str, serial: str | None, ca_dir: Path, ip: str,
         cpq_port: int, smtp_port: int, domains: tuple[str, ...], routes: tuple[str, ...],
         manager: str, manager_hostname: str | None, gateways: tuple[str, ...],
         managed_by: tuple[str, ...],
         clamd_socket: str | None, outbreak_rules: str | None, ssh_port: int | None,
         outbreak_urls: tuple[str, ...], metrics_port: int | None,
         retry_min: float, retry_max: float, force: bool, web_port: int) -> None:
    """Write a working configuration and certificates for one appliance."""
    from pvoq.config.template import ApplianceSpec
    from pvoq.deploy import init_appliance

    try:
        m_host, m_port = _host_port(manager)
        gw = []
        for g in gateways:
            name, _, where = g.partition("=")
            g_host, g_port = _host_port(where)
            gw.append((name, g_host, g_port))
        listed = []
        for m in managed_by:
            name, _, where = m.partition("=")
            if not name or not where:
                raise ValueError(f"--managed-by {m!r}: expected HOSTNAME=HOST:PORT")
            m_addr, m_prt = _host_port(where)
            listed.append((m_addr, m_prt, name))
        route_list = []
        for r in routes:
            dom, _, dest = r.partition("=")
            if not dest:
                raise ValueError(f"--route {r!r}: expected DOMAIN=HOST:PORT")
            route_list.append((dom, dest))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    spec = ApplianceSpec(
        role=role, hostname=hostname, serial=serial or f"PVOQ-{hostname.upper()}", ip=ip,
        cpq_port=cpq_port, smtp_port=smtp_port, domains=list(domains) or ["example.com"],
        routes=route_list, manager_address=m_host, manager_port=m_port,
        manager_hostname=manager_hostname, managers=listed, clamd_socket=clamd_socket,
        outbreak_rules_file=outbreak_rules, ssh_port=ssh_port,
        outbreak_urls=list(outbreak_urls), gateways=gw, retry_min_seconds=retry_min,
        retry_max_seconds=retry_max,
        metrics_port=(9325 if role == "manager" else 9326) if metrics_port is None
        else metrics_port or None)
    try:
        path = init_appliance(directory, spec, ca_dir=ca_dir, force=force,
                              web_port=web_port or None)
    except FileExistsError as exc:
        click.echo(f"pvoq: {exc}", err=True)
        sys.exit(2)
    load_or_exit(str(path))
    click.echo(f"{role} {hostname} initialised: {path}")
    click.echo(f"start it with: pvoq {role} run -c {path}")
    if web_port:
        host = f"[{ip}]" if ":" in ip else ip
        click.echo(f"web console: https://{host}:{web_port}/ (first add a user: pvoq cli -c "
                   f"{path} user add NAME --role admin)")


# How long a thread may hold the GIL while another waits for it (CPython's default is 5
# ms). An appliance's event loop shares the interpreter with its writer and worker
# threads: when one of those runs Python code, a loop woken by a socket would wait up to
# the whole interval before it answers; a tenth of it keeps replies prompt (measured in
# docs/benchmarks.md, "CPQ throughput").
GIL_SWITCH_INTERVAL_S = 0.0005


def _run_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Run an appliance's event loop: uvloop's when it is installed, unless
    PVOQ_EVENT_LOOP=asyncio asks for the standard library's; threads hand the GIL
    over every `GIL_SWITCH_INTERVAL_S`."""
    import os
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    if os.environ.get("PVOQ_EVENT_LOOP", "") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(coro)
            return
    asyncio.run(coro)


def _run_role(config_path: str, role: str, verbose: bool) -> None:
    cfg = load_or_exit(config_path)
    if cfg.role != role:
        click.echo(f"pvoq: {config_path}: system.role: this is a {cfg.role} configuration, "
                   f"not a {role} one", err=True)
        sys.exit(2)
    def announce(line: str) -> None:  # the ready and stopped lines, on stdout
        click.echo(line)
        sys.stdout.flush()

    try:
        from pvoq.appliance import Appliance
        from pvoq.datadir_lock import hold_data_dir
        app: Appliance
        with hold_data_dir(cfg.data_dir):  # before anything in the data directory is touched
            if role == "gateway":
                from pvoq.gateway import Gateway
                app = Gateway(cfg, echo=sys.stdout if verbose else None)
            else:
                from pvoq.manager import Manager
                app = Manager(cfg, echo=sys.stdout if verbose else None)
            _run_loop(app.run(announce))
    except ConfigError as exc:
        click.echo(f"pvoq: configuration error: {exc.located(path=str(cfg.path))}", err=True)
        sys.exit(2)
    except (OSError, OperatorError) as exc:  # e.g. the audit key is not this trail's
        click.echo(f"pvoq: {role} cannot start: {exc}", err=True)
        sys.exit(1)


@main.group()
def gateway() -> None:
    """The gateway role: scan mail and ship what it catches to the manager."""


@gateway.command("run")
@click.option("-c", "--config", "config_path", required=True, type=click.Path())
@click.option("-v", "--verbose", is_flag=True, help="Also print mail_logs lines on stdout.")
def gateway_run(config_path: str, verbose: bool) -> None:
    """Run a gateway in the foreground until SIGTERM."""
    _run_role(config_path, "gateway", verbose)


@main.group()
def manager() -> None:
    """The manager role: keep the quarantines and release mail back."""


@manager.command("run")
@click.option("-c", "--config", "config_path", required=True, type=click.Path())
@click.option("-v", "--verbose", is_flag=True, help="Also print mail_logs lines on stdout.")
def manager_run(config_path: str, verbose: bool) -> None:
    """Run a manager in the foreground until SIGTERM."""
    _run_role(config_path, "manager", verbose)


@main.group("config")
def config_group() -> None:
    """Configuration files."""


@config_group.command("check")
@click.option("-c", "--config", "config_path", required=True, type=click.Path())
def config_check(config_path: str) -> None:
    """Validate a configuration file and its certificates (exit 2 naming file, line and field).

    Beyond loading: each certificate file reads, each key is its certificate's, each
    certificate is valid today, and the CPQ certificate is issued by the configured CA and
    names this appliance's hostname; then the TLS contexts are built as the appliance does.
    """
    cfg = load_or_exit(config_path)
    from pvoq.config.certs import check_certificates
    from pvoq.cpq import tls
    problems = check_certificates(cfg)
    if not problems:
        try:
            tls.server_context(cfg.cpq_certificate, ciphers=cfg.ssl.inbound_ciphers)
            tls.client_context(cfg.cpq_certificate, ciphers=cfg.ssl.outbound_ciphers)
        except ConfigError as exc:
            problems.append(exc)
    for problem in problems:
        click.echo(f"pvoq: configuration error: {problem.located(path=str(cfg.path))}",
                   err=True)
    if problems:
        sys.exit(2)
    click.echo(f"{cfg.path}: ok ({cfg.role} {cfg.hostname}, {len(cfg.listeners)} listeners)")


@main.group("cluster")
def cluster_group() -> None:
    """Clustered gateways: settings at cluster, group and machine level."""


@cluster_group.command("check")
@click.option("-c", "--config", "config_path", required=True, type=click.Path())
def cluster_check(config_path: str) -> None:
    """Does the interface named for PVO at cluster level exist on every machine? (exit 1 if not)"""
    from pvoq.config.cluster import check_pvo_interface, machine_views, parse_layout
    from pvoq.config.xmltree import parse_xml

    path = Path(config_path).resolve()
    try:
        layout = parse_layout(parse_xml(path.read_bytes(), path=str(path)))
    except OSError as exc:
        click.echo(f"pvoq: configuration error: {path}: file: cannot read: {exc.strerror}",
                   err=True)
        sys.exit(2)
    except ConfigError as exc:
        click.echo(f"pvoq: configuration error: {exc.located(path=str(path))}", err=True)
        sys.exit(2)
    if layout is None:
        click.echo(f"pvoq: configuration error: {path}: config.cluster: not a clustered "
                   "configuration (no <cluster>)", err=True)
        sys.exit(2)
    views = machine_views(layout)
    problems = check_pvo_interface(views)
    click.echo(f"Cluster {layout.name}: {len(views)} machines")
    for view in views:
        state = "ok" if view.pvo_interface in (None, *view.interfaces) else "MISSING"
        click.echo(f"  {view.name}: PVO interface {view.pvo_interface or '(default)'!r} "
                   f"({view.pvo_level} level): {state}")
    for problem in problems:
        click.echo(f"Error: {problem}", err=True)
    if problems:
        click.echo("The PVO settings do not apply until every machine has the interface "
                   "(Network > IP Interfaces).", err=True)
        sys.exit(1)
    click.echo("The PVO interface exists on every machine.")


@main.command()
@click.option("--listen", default="127.0.0.1:2526", show_default=True, metavar="HOST:PORT")
@click.option("--dir", "directory", required=True, type=click.Path(path_type=Path))
def sink(listen: str, directory: Path) -> None:
    """A downstream SMTP server that stores what it receives (demo and tests)."""
    from pvoq.sink import run_sink
    host, port = _host_port(listen)
    asyncio.run(run_sink(host, port, directory))


@main.command()
@click.option("--keep", is_flag=True, help="Leave the deployment running and say how to reach it.")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="Deployment directory (default: a new temporary one).")
def demo(keep: bool, directory: Path | None) -> None:
    """Run a whole deployment on localhost and follow mail through it."""
    from pvoq.testing.demo import run_demo
    sys.exit(run_demo(keep=keep, directory=directory))


class _OperatorCommands(click.Group):
    """`pvoq cli`: its commands are added by their modules, imported when the group is first
    looked into, so that `pvoq gateway run` and `pvoq manager run` do not load them."""

    _added = False

    def _add_commands(self) -> None:
        if self._added:
            return
        self._added = True
        from pvoq.cli import (
            logs,
            migrate,
            operator,
            quarantine,
            quarantine_admin,
            queues,
            remote,
            scanning,
            spool,
            track,
            users,
        )
        # Each command module adds its commands (and groups) to `pvoq cli`.
        operator.register(self)     # status, tophosts, hoststatus, reload, pvo check
        quarantine.register(self)   # quarantine list|show|release|delete|search|bulk|..., audit
        quarantine_admin.register(self)  # quarantine add|edit|remove (the configuration file)
        queues.register(self)       # showrecipients, suspend/resume, workqueue, rate, ...
        remote.register(self)       # listeners, gateway add|list|..., ssh token|authorize|show
        scanning.register(self)     # pipeline show, outbreak reload|rescan
        logs.register(self)         # grep, tail (read the log file itself)
        spool.register(self)        # spool list|show (read the spool log itself)
        users.register(self)        # user add|passwd|role|delete|list|whoami
        track.register(self)        # track, logsub status|pull (the manager)
        migrate.register(operator.pvo)  # pvo migrate (the manager's migration wizard)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._add_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_commands()
        return super().list_commands(ctx)


@main.group("cli", cls=_OperatorCommands)
@click.option("-c", "--config", "config_path", required=True, type=click.Path())
@click.pass_context
def operator_cli(ctx: click.Context, config_path: str) -> None:
    """Operator commands against the running appliance of CONFIG."""
    ctx.obj = ClientContext(config_path)


doctor.register(main)               # pvoq doctor -c FILE [--json]

if __name__ == "__main__":  # pragma: no cover
    main()
