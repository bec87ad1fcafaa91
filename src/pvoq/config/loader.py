"""Read an appliance configuration file (AsyncOS-style XML) into `Config`.

Every error is one `ConfigError` naming the file, the line and the field:
`gw.xml:14: config.listeners.listener[2].port: not a port number (from 1 to 65535): 'abc'`.
The loader checks what can be checked without the network: types, ranges,
references between sections (a listener's interface must exist), the HAT and
RAT grammar, and that the CPQ certificate files exist. A number must be finite
and within the range its model field declares (`model.RANGE`); an element given
twice where it takes one value, or one the loader never asks for, is refused
(`xmltree`). What the certificates hold is `config.certs`'s (`config check`).

Defaults are not written here: `convert.Fields` reads each field of a model class
from its element, and an element left out gives the default `config.model`
declares for that field (`file_default`).

This module reads the file, the system, interfaces, listeners, certificates,
SSH and delivery sections and puts `Config` together; the other sections
have their own readers: `scanload` (filters, policies, antivirus, outbreak),
`quarantineload` (`<quarantines>`, `<quarantine_store>`, `<api>`), `pvoload`
(`<pvo_quarantines>`), `webload`, `logs`, `logsub`, `metrics`, `cluster`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pvoq.config import convert
from pvoq.config.cluster import ClusterInfo, effective_root, parse_layout
from pvoq.config.errors import ConfigError
from pvoq.config.hat import Hat, Rat, make_rat, parse_hat
from pvoq.config.loadcommon import check_interface, file_path
from pvoq.config.logs import parse_logs
from pvoq.config.logsub import log_subscription
from pvoq.config.metrics import parse_metrics
from pvoq.config.model import (
    CPQ_DEFAULT_PORT,
    CPQ_LISTENER_NAME,
    CPQ_MAX_CONN_PER_IP,
    ROLE_MANAGER,
    Config,
    CpqCertificate,
    DeliverySettings,
    Interface,
    Listener,
    ListenerProtocol,
    ListenerType,
    PvoSettings,
    Role,
    Route,
    SshSettings,
    SslConfig,
    file_default,
)
from pvoq.config.pvoload import parse_pvo
from pvoq.config.quarantineload import MAX_QUARANTINE_NAME, parse_quarantines
from pvoq.config.scanload import parse_scan
from pvoq.config.webload import parse_web
from pvoq.config.xmltree import MAX_BYTES, Node, parse_xml, unknown

__all__ = ["MAX_QUARANTINE_NAME", "data_dir_of", "load_config"]


def load_config(path: str | Path) -> Config:
    """Load and validate the configuration at *path*."""
    path = Path(path).resolve()
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)   # parse_xml refuses a larger file
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", field="file", path=str(path)) from exc
    try:
        return _Loader(path).load(parse_xml(data, path=str(path)))
    except ConfigError as exc:
        raise exc.located(path=str(path)) from None


_DATA_DIR = re.compile(rb"<data_dir>\s*([^<]*?)\s*</data_dir>")


def data_dir_of(path: str | Path) -> Path | None:
    """Where the appliance of the file at *path* keeps its data, even if the file is broken.

    For `reload` of a file that does not load: the running appliance (its
    admin socket is in this directory) is the one to refuse it and say why.
    The `<data_dir>` element of `<system>` when the XML parses, else the
    only `<data_dir>` element of the text; None when there is no such one.
    """
    path = Path(path).resolve()
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
        system = parse_xml(data, path=str(path)).require("system")
        raw = system.require("data_dir").text.strip()
    except OSError:
        return None
    except ConfigError:
        found = _DATA_DIR.findall(data)
        if len(found) != 1:
            return None
        try:
            raw = found[0].decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not raw or "\0" in raw:
        return None
    return (path.parent / raw).resolve()


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def _path(self, parent: Node, tag: str, *, must_exist: bool = True) -> Path:
        return file_path(parent, tag, self.base, must_exist=must_exist)

    def load(self, root: Node) -> Config:
        if root.tag != "config":
            raise root.error(f"root element must be <config>, not <{root.tag}>")
        original = root
        root, cluster = self._cluster(root)
        system = root.require("system")
        role = convert.value(system, "role", convert.choice(*Role), required=True)
        hostname = convert.value(system, "hostname", convert.hostname, required=True)
        serial = convert.value(system, "serial_number", str, required=True)
        data_dir = self._path(system, "data_dir", must_exist=False)

        interfaces = self._interfaces(root)
        pvo = parse_pvo(root, role, interfaces)
        listeners = self._listeners(root, interfaces)
        if pvo.enabled and not any(lst.is_cpq for lst in listeners):
            generated = self._generated_cpq_listener(role, pvo)
            clash = [x for x in listeners if (x.interface_name, x.port) ==
                     (generated.interface_name, generated.port)]
            if clash:
                where = root.require("pvo_quarantines")
                where = where.first("port") or where
                raise ConfigError(f"the cpq_listener's port {generated.port} on "
                                  f"{generated.interface_name!r} is already used by listener "
                                  f"{clash[0].name!r}", field=where.path, line=where.line)
            listeners = (*listeners, generated)
        cert_node = root.require("cpq_certificate")
        certificate = CpqCertificate(
            ca_certificate=self._path(cert_node, "ca_certificate"),
            certificate=self._path(cert_node, "certificate"),
            private_key=self._path(cert_node, "private_key"),
            lines={tag: cert_node.require(tag).line
                   for tag in ("ca_certificate", "certificate", "private_key")},
        )
        ssl_fields = convert.Fields(root.first("ssl_config"), SslConfig)
        ssl = SslConfig(inbound_ciphers=ssl_fields("inbound_ciphers", str),
                        outbound_ciphers=ssl_fields("outbound_ciphers", str))
        database_url = convert.Fields(root, Config)("database_url", str)
        config = Config(
            path=self.path, role=role, hostname=hostname, serial_number=serial,
            data_dir=data_dir, interfaces=interfaces, listeners=listeners, pvo=pvo,
            cpq_certificate=certificate, ssl=ssl, delivery=self._delivery(root),
            scan=parse_scan(root, self.base), database_url=database_url,
            **parse_quarantines(root), logs=parse_logs(root),
            ssh=self._ssh(root, interfaces), cluster=cluster,
            web=parse_web(root, self.base),
            log_subscription=log_subscription(root),
            metrics=parse_metrics(root),
        )
        # Last: every element the file gives must have been read by now.
        layout = original.first("cluster") if cluster is not None else None
        for problem in (unknown(root),
                        None if layout is None else unknown(layout, skip={"settings"})):
            if problem is not None:
                raise problem
        return config

    def _interfaces(self, root: Node) -> tuple[Interface, ...]:
        result: list[Interface] = []
        section = root.require("interfaces")
        for node in section.all("interface"):
            fields = convert.Fields(node, Interface)
            name = fields("name", str)
            if any(i.name == name for i in result):
                raise ConfigError(f"duplicate interface {name!r}", field=node.path, line=node.line)
            result.append(Interface(name, fields("ip", convert.ip)))
        if not result:
            raise section.error("at least one <interface> is required")
        return tuple(result)

    def _listeners(self, root: Node, interfaces: tuple[Interface, ...]) -> tuple[Listener, ...]:
        section = root.first("listeners")
        nodes = [] if section is None else section.all("listener")
        result: list[Listener] = []
        for node in nodes:
            listener = self._listener(node)
            if (listener.certificate is None) != (listener.private_key is None):
                raise ConfigError("a listener certificate needs both <certificate> and "
                                  "<private_key>", field=f"{node.path}.certificate",
                                  line=node.line)
            check_interface(node, listener.interface_name, interfaces)
            if any(x.name == listener.name for x in result):
                raise ConfigError(f"duplicate listener {listener.name!r}", field=node.path,
                                  line=node.line)
            clash = [x for x in result if (x.interface_name, x.port) ==
                     (listener.interface_name, listener.port)]
            if clash:
                raise ConfigError(f"port {listener.port} on {listener.interface_name!r} is "
                                  f"already used by listener {clash[0].name!r}",
                                  field=node.path, line=node.line)
            result.append(listener)
        return tuple(result)

    def _listener(self, node: Node) -> Listener:
        fields = convert.Fields(node, Listener)
        protocol = fields("protocol", convert.choice(*ListenerProtocol))
        hat_node = node.require("hat")
        hat: Hat = parse_hat(hat_node.text, first_line=hat_node.line)
        return Listener(
            name=fields("name", str),
            protocol=protocol,
            interface_name=fields("interface_name", str),
            port=(fields("port", convert.port, default=CPQ_DEFAULT_PORT) if protocol == ListenerProtocol.CPQ
                  else fields("port", convert.port)),
            listen_queue_size=fields("listen_queue_size", convert.positive_int),
            type=fields("type", convert.choice(*ListenerType)),
            hat=hat,
            rat=self._rat(node.require("rat")),
            max_message_size=fields("max_message_size", convert.positive_int),
            max_connections=fields("max_connections", convert.positive_int),
            timeout_seconds=fields("timeout_seconds", convert.seconds),
            max_junk_commands=fields("max_junk_commands", convert.positive_int),
            max_session_seconds=fields("max_session_seconds", convert.limit_seconds),
            starttls_deadline_seconds=fields("starttls_deadline_seconds", convert.limit_seconds),
            reject_unauth_pipelining=fields("reject_unauth_pipelining", convert.boolean),
            received_header=fields("received_header", convert.boolean),
            ssl_ciphers=fields("ssl_ciphers", str),
            certificate=(self._path(node, "certificate")
                         if node.first("certificate") is not None else None),
            private_key=(self._path(node, "private_key")
                         if node.first("private_key") is not None else None),
        )

    def _rat(self, node: Node) -> Rat:
        entries = []
        for entry in node.all("rat_entry"):
            entries.append((convert.value(entry, "rat_address", str, required=True),
                            convert.value(entry, "access", str, required=True), entry.line))
        return make_rat(entries)

    def _generated_cpq_listener(self, role: str, pvo: PvoSettings) -> Listener:
        """The hidden listener the PVO settings imply when the file does not spell it out."""
        if role == ROLE_MANAGER:
            allowed = [g.address for g in pvo.gateways]
        else:
            allowed = list(dict.fromkeys(m.address for m in pvo.all_managers))
        members = "\n".join(f"  {a}" for a in allowed) or "  127.0.0.1"
        hat_text = (f"$RELAYED\n  RELAY {{max_conn_per_ip = {CPQ_MAX_CONN_PER_IP}}}\n"
                    "$BLOCKED\n  REJECT {}\nRELAYLIST:\n"
                    f"{members}\n    $RELAYED (Only select hosts can relay from this box)\n"
                    "ALL\n  $BLOCKED (Everyone else)\n")
        return Listener(
            name=CPQ_LISTENER_NAME, protocol=ListenerProtocol.CPQ, interface_name=pvo.interface_name,
            port=pvo.port, listen_queue_size=file_default(Listener, "listen_queue_size"),
            type=ListenerType.PRIVATE, hat=parse_hat(hat_text),
            rat=make_rat([("ALL", "ACCEPT", 0)]), generated=True,
        )

    def _cluster(self, root: Node) -> tuple[Node, ClusterInfo | None]:
        """This machine's sections if the file describes a cluster (see `config.cluster`)."""
        layout = parse_layout(root)
        if layout is None:
            return root, None
        return effective_root(root, layout)

    def _ssh(self, root: Node, interfaces: tuple[Interface, ...]) -> SshSettings:
        """`<ssh>`: the gateway's SSH command service, the manager's lookup timeout."""
        node = root.first("ssh")
        if node is None:
            return SshSettings()
        fields = convert.Fields(node, SshSettings)
        interface_name = fields("interface_name", str, default=interfaces[0].name)
        check_interface(node, interface_name, interfaces)
        return SshSettings(
            enabled=fields("enabled", convert.boolean),
            interface_name=interface_name,
            port=fields("port", convert.port),
            timeout_seconds=fields("timeout_seconds", convert.seconds),
        )

    def _delivery(self, root: Node) -> DeliverySettings:
        node = root.first("delivery")
        if node is None:
            return DeliverySettings()
        routes: list[Route] = []
        section = node.first("smtp_routes")
        for r in ([] if section is None else section.all("route")):
            host, port = convert.value(r, "destination", convert.host_port, required=True)
            routes.append(Route(convert.Fields(r, Route)("domain", str), host, port))
        fields = convert.Fields(node, DeliverySettings)
        settings = DeliverySettings(
            routes=tuple(routes),
            retry_min_seconds=fields("retry_min_seconds", convert.seconds),
            retry_max_seconds=fields("retry_max_seconds", convert.seconds),
            max_queue_lifetime_seconds=fields("max_queue_lifetime_seconds", convert.seconds),
            timeout_seconds=fields("timeout_seconds", convert.seconds),
            max_connections_per_host=fields("max_connections_per_host", convert.positive_int),
        )
        if settings.retry_max_seconds < settings.retry_min_seconds:
            raise ConfigError("retry_max_seconds is smaller than retry_min_seconds",
                              field=f"{node.path}.retry_max_seconds", line=node.line)
        return settings
