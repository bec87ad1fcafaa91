"""What the gateway and the manager share: one asyncio process per appliance.

Owns the process-level wiring: data directory, mail_logs, ID counters, the
CPQ TLS contexts, listeners (`listeners.ListenerSet`), delivery queues, the
admin socket, reload, and the wiring of the operator commands common to both
roles (`commands`: `status`, `tophosts`, `delivernow`...).
The role modules (`gateway`, `manager`) add their handlers and commands.

The web console (`<web>`): the appliance's users (`users.UserStore`,
`<data>/users.json`) and console sessions, the admin socket's mapping of
peer uids to those users (`users.identity`) with the role check of every
command (`users.permissions`), and the HTTPS server (`web.server.WebServer`)
serving `web.console.app.build_app(console_context())`, restarted in place
on reload.

`run(announce=...)` tells the operator when the appliance is ready (one line: what
listens where) and when it has stopped; `pvoq gateway|manager run` prints both on
stdout. With `<metrics>`, `/metrics` is served on its own port (`metrics.server`)
from the appliance's live collector (`metrics.live`), which a role extends with
`metric_families`. One process per data directory: `datadir_lock.hold_data_dir`,
which `pvoq ... run` takes before the appliance is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

from pvoq import __version__
from pvoq.admin.protocol import AdminServer, CommandError
from pvoq.commands import (
    Incoming,
    ListenerCommands,
    QueueCommands,
    ReloadCommands,
    StatusCommands,
    SuspendCommands,
)
from pvoq.config.errors import ConfigError
from pvoq.config.loader import load_config
from pvoq.config.model import Config, Listener
from pvoq.counters import Counters
from pvoq.cpq import tls
from pvoq.delivery.queue import DeliveryQueues
from pvoq.fsutil import (
    Tightened,
    make_dir,
    prepare_tree,
    remove_leftovers,
    restrict_umask,
)
from pvoq.listeners import ListenerSet, interface_ip
from pvoq.logcommands import LogCommands
from pvoq.maillog import IdAllocator, MailLog
from pvoq.metrics.live import ApplianceCollector
from pvoq.smtp.server import BaseHandler, ConnectionGate, PvoqSMTP, ServerContext
from pvoq.spool.store import Spool
from pvoq.users import SessionStore, UserStore
from pvoq.users.commands import UserCommands
from pvoq.users.identity import authorize, identify, web_peer

if TYPE_CHECKING:
    from pvoq.metrics.live import Metric
    from pvoq.metrics.server import MetricsServer
    from pvoq.web.console.auth import User
    from pvoq.web.console.context import ConsoleContext
    from pvoq.web.server import Deferred, WebServer

# Data directories whose files only `fsutil.atomic_write` creates (never looser than 0640,
# whatever the umask), and that grow with the mail: their files are not checked one by one.
ATOMIC_ONLY = ("quarantine/bodies", "cpq_transfers", "outbreak_copies")


def listener_contexts(config: Config) -> dict[str, ssl.SSLContext]:
    """TLS contexts of their own: a CPQ listener with `<ssl_ciphers>`, a public one with a
    `<certificate>` (STARTTLS offered as its HAT policies say)."""
    contexts = {}
    for listener in config.listeners:
        ciphers = listener.ssl_ciphers or config.ssl.inbound_ciphers
        try:
            if listener.is_cpq and listener.ssl_ciphers:
                contexts[listener.name] = tls.server_context(config.cpq_certificate,
                                                             ciphers=ciphers)
            elif not listener.is_cpq and listener.certificate and listener.private_key:
                contexts[listener.name] = tls.public_server_context(
                    listener.certificate, listener.private_key, ciphers=ciphers)
        except ConfigError as exc:
            raise ConfigError(exc.message, field=f"listener {listener.name}: {exc.field}",
                              path=str(config.path)) from None
    return contexts


def _web_tls(config: Config) -> ssl.SSLContext | None:
    """The console's TLS context (None without `<web>`, or over plain HTTP)."""
    if not config.web.enabled:
        return None
    from pvoq.web.server import web_tls_context

    return web_tls_context(config.web)


class Appliance:
    """One appliance process: the parts both roles share, and its lifecycle.

    A role subclasses it: its constructor calls this one, makes its delivery
    `queues` and its own parts, then calls `register_commands()` to wire the
    common operator commands; it answers `handler_for(listener)` with the
    SMTP handler of each listener, and may extend `apply_config`,
    `after_reload`, `recover` and `status_gauges`. `run()` starts it,
    waits for SIGTERM/SIGINT and stops it; SIGHUP reopens the logs (after an
    outside rename) and re-reads the configuration, as `reload` does.
    """

    role = "appliance"

    def __init__(self, config: Config, *, echo: TextIO | None = None) -> None:
        self.config = config
        restrict_umask()  # what SQLite, logging and Alembic create is 0640/0750 too
        make_dir(config.data_dir)
        # before anything opens a file there (SQLite gives -wal/-shm the database's mode)
        tightened = prepare_tree(config.data_dir, trusted=ATOMIC_ONLY)
        removed = self._remove_leftovers(config, tightened.removed)
        self.maillog = MailLog(config.logs_dir, appliance=f"{self.role} {config.hostname}",
                               serial=config.serial_number, echo=echo,
                               settings=config.logs.get("mail_logs"), hostname=config.hostname)
        self._log_start_cleanup(tightened, removed)
        self.ids = IdAllocator(config.data_dir / "ids.json")
        self.context = ServerContext(self.maillog, self.ids, config.hostname,
                                     spill_dir=make_dir(config.data_dir / "spool"))
        self.server_tls: ssl.SSLContext = tls.server_context(
            config.cpq_certificate, ciphers=config.ssl.inbound_ciphers)
        self.listener_tls = listener_contexts(config)
        self.client_tls: ssl.SSLContext = tls.client_context(
            config.cpq_certificate, ciphers=config.ssl.outbound_ciphers)
        self.spool = Spool(config.data_dir / "spool")
        for problem in self.spool.damaged:
            self.maillog.warning(f"Spool log: {problem}")
        self.admin = AdminServer(config.admin_socket, before_reply=self.maillog.flush)
        web = config.web
        self.users = UserStore(config.data_dir / "users.json",
                               max_failures=web.lockout_failures,
                               lockout_seconds=web.lockout_seconds, on_lockout=self._lockout)
        self.sessions = SessionStore(config.data_dir / "sessions.json",
                                     idle_seconds=web.session_idle_seconds,
                                     absolute_seconds=web.session_max_seconds)
        self.admin.identify = lambda peer: identify(peer, self.users)
        self.admin.authorize = authorize
        self.web_tls = _web_tls(config)
        self.web: WebServer | None = None
        self.listeners = ListenerSet(lambda: self.config, self.maillog, self._sessions)
        self.started = time.time()
        self._stopping = asyncio.Event()
        self.queues: DeliveryQueues  # set by the role
        self.counters = Counters(config.data_dir / "counters.json")
        self.context.counters = self.counters
        self._background: set[asyncio.Future[None]] = set()
        self.metrics: MetricsServer | None = None
        self.metrics_error = ""  # why `<metrics>` is not served, when it is not

    @staticmethod
    def _remove_leftovers(config: Config, removed: dict[str, int]) -> dict[str, int]:
        """Remove the temporary files of writes a crash or a full disk cut short beside the
        configuration and the CPQ certificate; *removed*: those in the data directory."""
        removed = dict(removed)
        beside = {config.path.parent, config.cpq_certificate.certificate.parent,
                  config.cpq_certificate.private_key.parent} - {config.data_dir}
        for directory in sorted(beside):
            if count := remove_leftovers(directory, ours_only=True):
                removed[str(directory)] = count
        return removed

    def _log_start_cleanup(self, tightened: Tightened, removed: dict[str, int]) -> None:
        shown = 10
        for path, old, new in tightened.changed[:shown]:
            self.maillog.warning(f"File mode of {path} tightened from {old:04o} to {new:04o}: "
                                 f"group or other users could write or read it")
        if len(tightened.changed) > shown:
            self.maillog.warning(f"File modes of {len(tightened.changed) - shown} more paths "
                                 f"under {self.config.data_dir} tightened the same way")
        for path, why in tightened.failed:
            self.maillog.warning(f"File mode of {path} could not be tightened: {why}")
        if removed:
            where = ", ".join(f"{d} {n}" for d, n in sorted(removed.items()))
            self.maillog.info(f"Removed {sum(removed.values())} temporary files left by "
                              f"interrupted writes ({where})")

    def register_commands(self, *, incoming: Incoming | None = None) -> None:
        """Register the operator commands common to both roles (once `queues` is set);
        *incoming*: messages waiting before the delivery queues (a gateway's work queue),
        which `showrecipients` and `deleterecipients` see too."""
        queue_commands = QueueCommands(self.queues, self.maillog, incoming=incoming)
        listener_commands = ListenerCommands(self.listeners)
        for commands in (
                queue_commands, listener_commands,
                SuspendCommands(listener_commands, queue_commands),
                StatusCommands(role=self.role, started=self.started, config=lambda: self.config,
                               queues=self.queues, counters=self.counters,
                               listeners=self.listeners, gauges=self.status_gauges),
                ReloadCommands(self.reload),
                LogCommands({self.maillog.name: self.maillog}, lambda: self.config, self.reload),
                UserCommands(self.users, self.sessions, self.maillog)):
            commands.register(self.admin)

    # -- wiring hooks for the roles -----------------------------------------
    def handler_for(self, listener: Listener) -> tuple[BaseHandler, type[PvoqSMTP]]:
        raise NotImplementedError

    def apply_config(self, config: Config) -> None:
        """Take a reloaded configuration into the role's parts (routes, filters...)."""
        self.queues.retry_min_s = config.delivery.retry_min_seconds
        self.queues.retry_max_s = config.delivery.retry_max_seconds
        self.queues.max_queue_lifetime_s = config.delivery.max_queue_lifetime_seconds
        self.queues.max_connections_per_host = config.delivery.max_connections_per_host

    async def after_reload(self, old: Config, new: Config) -> None:
        """What a reload must do that needs the event loop (services to rebind)."""

    async def recover(self) -> None:
        """Bring back what was on disk when the process last stopped."""

    def status_gauges(self) -> dict[str, int]:
        return {}

    # -- the web console -------------------------------------------------------
    def console_context(self) -> ConsoleContext:
        """What the console's pages reach; the manager adds its service and REST API."""
        from pvoq.web.console.context import ConsoleContext

        return ConsoleContext(
            role=self.role, hostname=self.config.hostname, config=lambda: self.config,
            maillog=self.maillog, users=self.users, call=self.console_call,
            sessions=self.sessions, https=self.web_tls is not None,
            max_body_bytes=self.config.web.max_body_bytes)

    async def console_call(self, name: str, args: dict[str, Any], user: User) -> dict[str, Any]:
        """Operator command *name* as the console's *user*: the admin socket's own path
        (role check, audit), in-process."""
        peer = web_peer(user.name, user.role, user.quarantines, user.origin)
        return await self.admin.execute(name, args, peer)

    def _lockout(self, user: str, client: str, failures: int) -> None:
        minutes = self.config.web.lockout_seconds / 60
        self.maillog.warning(f"Console user {user} locked out for {minutes:g} minutes after "
                             f"{failures} failed logins, the last from {client}")

    def _console_app(self) -> Deferred:
        """The console, built on its first connection: an appliance whose console nobody
        opens never loads FastAPI, Jinja2 and uvicorn."""
        from pvoq.web.server import Deferred

        def build() -> Any:
            from pvoq.web.console.app import build_app

            return build_app(self.console_context())

        return Deferred(build, ("pvoq.web.console.app", "uvicorn"))

    async def _start_console(self) -> None:
        web = self.config.web
        if not web.enabled:
            return
        from pvoq.web.server import WebServer

        self.web = WebServer(self._console_app(), web.address, web.port, self.web_tls)
        self.web.start()
        self.maillog.info(f"Web console listening on {self.web.url}")

    async def _reload_console(self, new: Config, tls: ssl.SSLContext | None) -> None:
        """Take `<web>` (and the users' lockout and session settings) into effect."""
        web = new.web
        self.users.max_failures, self.users.lockout_seconds = (web.lockout_failures,
                                                               web.lockout_seconds)
        self.sessions.idle_seconds = web.session_idle_seconds
        self.sessions.absolute_seconds = web.session_max_seconds
        self.web_tls = tls
        if not web.enabled:
            if self.web is not None:
                await self.web.stop()
                self.web = None
                self.maillog.info("Web console stopped: no <web> in the configuration")
            return
        if self.web is None:
            await self._start_console()
            return
        try:
            await self.web.restart(self._console_app(), web.address, web.port, tls)
        except OSError as exc:
            self.maillog.warning(f"Web console kept on {self.web.address}:{self.web.port}: "
                                 f"cannot listen on {web.address}:{web.port}: {exc.strerror}")
            return
        self.maillog.info(f"Web console restarted on {self.web.url}")

    def metric_families(self) -> Iterable[Metric]:
        """The role's own live metrics (`metrics.live`), read at scrape time in a worker
        thread: from snapshots and maintained counters only."""
        return ()

    # -- lifecycle -----------------------------------------------------------
    def listeners_suspended(self) -> bool:
        """True when no CPQ listener accepts connections (suspended or not bound)."""
        return self.listeners.cpq_suspended()

    def interface_ip(self, name: str) -> str:
        return interface_ip(self.config, name)

    async def start(self) -> None:
        self.maillog.info(f"pvoq {__version__} {self.role} {self.config.hostname} starting")
        await self.recover()
        self.queues.start()
        await self.listeners.bind_all()
        await self.admin.start()
        await self._start_console()
        self._start_metrics(self.config)
        self.maillog.info(f"{self.role} {self.config.hostname} ready")

    def _start_metrics(self, config: Config) -> None:
        """Serve `/metrics` as *config* says. A port that cannot be bound is logged (and
        said on the ready line), not fatal: monitoring never stops the mail."""
        settings = config.metrics
        self.metrics_error = ""
        if not (settings.enabled and settings.port):
            return
        from pvoq.metrics.server import MetricsServer

        collector = ApplianceCollector(
            role=self.role, hostname=lambda: self.config.hostname, started=self.started,
            config=lambda: self.config, queues=self.queues, listeners=self.listeners,
            counters=self.counters, extra=self.metric_families)
        try:
            self.metrics = MetricsServer(collector, settings.address, settings.port)
        except OSError as exc:
            self.metrics_error = (f"metrics cannot bind {settings.address}:{settings.port}: "
                                  f"{exc.strerror}")
            self.maillog.critical(f"{self.metrics_error[0].upper()}{self.metrics_error[1:]}; "
                                  "/metrics is off until a reload")
            return
        self.metrics.start()
        self.maillog.info(f"Metrics listening on {settings.address} port {settings.port}")

    def ready_line(self) -> str:
        """What listens where, in one line: each listener, SSH, API and console, metrics,
        the admin socket (a role's server found as `ssh_service`, `api` or `console`)."""
        parts = []
        for listener in self.config.listeners:
            sockets = getattr(self.listeners.servers.get(listener.name), "sockets", None)
            if not sockets:
                parts.append(f"{listener.name} ({listener.protocol}) not listening")
                continue
            host, port = sockets[0].getsockname()[:2]
            parts.append(f"{listener.name} ({listener.protocol}) {host}:{port}")
        for label, attribute in (("SSH", "ssh_service"), ("REST API", "api"),
                                 ("console", "web"), ("metrics", "metrics")):
            service = getattr(self, attribute, None)
            host = getattr(service, "address", None) or getattr(service, "host", None)
            if service is not None and host is not None:
                path = "/metrics" if attribute == "metrics" else ""
                parts.append(f"{label} {host}:{getattr(service, 'port', '?')}{path}")
        if self.metrics_error:
            parts.append(self.metrics_error)
        parts.append(f"admin socket {self.config.admin_socket}")
        return (f"pvoq {__version__} {self.role} {self.config.hostname} ready (pid "
                f"{os.getpid()}): " + "; ".join(parts))

    def _sessions(self, listener: Listener, gate: ConnectionGate) -> Callable[[], PvoqSMTP]:
        """The protocol factory of *listener*'s server (`listeners.SessionFactory`)."""
        handler, protocol = self.handler_for(listener)
        name, ip = listener.name, self.interface_ip(listener.interface_name)

        def make() -> PvoqSMTP:
            # Looked up per connection: a reload changes HAT, RAT and TLS at once.
            listener = next(x for x in self.config.listeners if x.name == name)
            context = self.listener_tls.get(name, self.server_tls if listener.is_cpq else None)
            extra: dict[str, Any] = {"tls_context": context} if context is not None else {}
            return protocol(handler, listener=listener, interface_ip=ip, context=self.context,
                            gate=gate, **extra)
        return make

    async def reload(self) -> str:
        """Re-read the configuration file; a bad one is refused and the old one keeps running.

        Certificates, cipher lists, HAT/RAT, PVO settings, routes and filters
        take effect for the next connection or delivery; a listener whose
        interface or port changed is rebound. Queued mail is untouched.
        """
        try:
            new = load_config(self.config.path)
            server_tls = tls.server_context(new.cpq_certificate, ciphers=new.ssl.inbound_ciphers)
            listener_tls = listener_contexts(new)
            client_tls = tls.client_context(new.cpq_certificate,
                                            ciphers=new.ssl.outbound_ciphers)
            web_tls = _web_tls(new)
        except ConfigError as exc:
            located = exc.located(path=str(self.config.path))
            self.maillog.warning(f"Configuration reload refused: {located}")
            raise CommandError(f"Configuration reload refused, the running one is kept: "
                               f"{located}") from None
        fixed = [f for f in ("role", "hostname", "serial_number", "data_dir")
                 if getattr(new, f) != getattr(self.config, f)]
        if fixed:
            message = f"Configuration reload refused: {', '.join(fixed)} change needs a restart"
            self.maillog.warning(message)
            raise CommandError(message)
        old = self.config
        self.config, self.server_tls, self.client_tls = new, server_tls, client_tls
        self.listener_tls = listener_tls
        self.apply_config(new)
        self.maillog.configure(new.logs.get(self.maillog.name))
        await self.after_reload(old, new)
        await self.listeners.rebind(new)
        await self._reload_console(new, web_tls)
        if new.metrics != old.metrics or self.metrics_error:  # moved, or bind again
            if self.metrics is not None:
                await self.metrics.stop()
                self.metrics = None
            self._start_metrics(new)
        self.maillog.info(f"Configuration reloaded from {new.path}")
        return f"Configuration reloaded from {new.path}."

    async def stop(self) -> None:
        self.counters.save()
        with contextlib.suppress(OSError):   # a full disk: the sessions end sooner, that is all
            self.sessions.save()
        if self.web is not None:
            await self.web.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        await self.admin.stop()
        await self.listeners.close()
        await self.listeners.close_sessions()
        await self.queues.stop()
        self.spool.close()
        self.maillog.info(f"{self.role} {self.config.hostname} stopped")
        self.maillog.close()

    async def run(self, announce: Callable[[str], None] | None = None) -> None:
        """Start, wait for SIGTERM or SIGINT, stop; *announce* hears the ready line once
        started and the stopped line once stopped."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        await self.start()
        if announce is not None:
            announce(self.ready_line())
        try:
            await self._stopping.wait()
        finally:
            await self.stop()
            if announce is not None:
                announce(f"pvoq {self.role} {self.config.hostname} stopped (pid "
                         f"{os.getpid()})")

    def _reload_on_signal(self) -> None:
        # SIGHUP also reopens the logs: after logrotate's rename, a new mail_logs begins
        self.maillog.reopen()

        async def reload() -> None:
            with contextlib.suppress(CommandError):  # already logged; the old config runs on
                await self.reload()
        self._background.add(task := asyncio.ensure_future(reload()))
        task.add_done_callback(self._background.discard)
