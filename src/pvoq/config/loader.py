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
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from pvoq.config import convert
from pvoq.config.cluster import ClusterInfo, effective_root, parse_layout
from pvoq.config.errors import ConfigError
from pvoq.config.filterlang import BUILTIN_QUARANTINES, Filter, FilterSyntaxError, parse_filters
from pvoq.config.hat import Hat, Rat, make_rat, parse_hat
from pvoq.config.logs import parse_logs
from pvoq.config.logsub import log_subscription
from pvoq.config.metrics import parse_metrics
from pvoq.config.model import (
    CPQ_DEFAULT_PORT,
    CPQ_LISTENER_NAME,
    CPQ_MAX_CONN_PER_IP,
    RETENTION_DEFAULT,
    ROLE_GATEWAY,
    ROLE_MANAGER,
    UNSCANNABLE_ACTIONS,
    AntivirusSettings,
    ApiSettings,
    ApiToken,
    Config,
    ContentFilter,
    CpqCertificate,
    DeliverySettings,
    GatewayRecord,
    Interface,
    Listener,
    ListenerProtocol,
    ListenerType,
    MailPolicy,
    ManagerRecord,
    OutbreakSettings,
    PvoSettings,
    QuarantineDefinition,
    QuarantineStoreSettings,
    Role,
    Route,
    ScanSettings,
    SshSettings,
    SslConfig,
    file_default,
    value_range,
)
from pvoq.config.webload import parse_web
from pvoq.config.xmltree import MAX_BYTES, Node, parse_xml, unknown

T = TypeVar("T")

_RETENTION_UNITS = {"minutes": 60, "hours": 3600, "days": 86400}


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


MAX_QUARANTINE_NAME = 64  # the quarantine store's name columns


class _Loader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent

    def _path(self, parent: Node, tag: str, *, must_exist: bool = True) -> Path:
        node = parent.require(tag)
        raw = node.text.strip()
        if not raw:
            raise node.error("empty path")
        p = Path(raw)
        p = p if p.is_absolute() else (self.base / p)
        if must_exist and not p.exists():
            raise ConfigError(f"file not found: {p}", field=node.path, line=node.line)
        return p.resolve()

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
        pvo = self._pvo(root, role, interfaces)
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
            scan=self._scan(root), database_url=database_url,
            **self._quarantines(root), logs=parse_logs(root),
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

    def _quarantines(self, root: Node) -> dict[str, Any]:
        """`<quarantines>`, `<quarantine_store>` and `<api>` of a manager."""
        definitions: list[QuarantineDefinition] = []
        section = root.first("quarantines")
        for q in ([] if section is None else section.all("quarantine")):
            fields = convert.Fields(q, QuarantineDefinition)
            name = fields("name", str)
            if not 0 < len(name) <= MAX_QUARANTINE_NAME:
                raise ConfigError(f"quarantine name {name[:80]!r}: 1 to {MAX_QUARANTINE_NAME} "
                                  "characters", field=f"{q.path}.name", line=q.line)
            if any(d.name == name for d in definitions):
                raise ConfigError(f"duplicate quarantine {name!r}", field=q.path, line=q.line)
            unit = convert.value(q, "retention_unit", convert.choice(*_RETENTION_UNITS), RETENTION_DEFAULT[1])
            amount = convert.value(q, "retention", convert.seconds, RETENTION_DEFAULT[0])
            retention = amount * _RETENTION_UNITS[unit]
            bounds = value_range(QuarantineDefinition, "retention_seconds")
            assert bounds is not None
            if not bounds[0] <= retention <= bounds[1]:
                where = q.first("retention") or q
                raise ConfigError(f"{amount:g} {unit} is out of range (a retention "
                                  f"{convert.describe_range(bounds)} seconds)",
                                  field=where.path, line=where.line)
            early = q.first("early_release")
            definitions.append(QuarantineDefinition(
                name=name,
                retention_seconds=retention,
                default_action=fields("default_action", convert.choice("release", "delete")),
                free_up_space=fields("free_up_space", convert.boolean),
                subject_tag=fields("subject_tag", str),
                subject_position=fields("subject_position", convert.choice("prepend", "append")),
                x_header=fields("x_header", str),
                strip_attachments=fields("strip_attachments", convert.boolean),
            ))
            last = definitions[-1]
            if early is not None and last.default_action != "release" and (
                    last.subject_tag or last.x_header or last.strip_attachments):
                raise ConfigError("early-release options need default_action release",
                                  field=early.path, line=early.line)
        frees: dict[str, bool] = dict.fromkeys(BUILTIN_QUARANTINES, True)
        frees.update((d.name, d.free_up_space) for d in definitions)
        if not any(frees.values()):
            raise ConfigError("at least one quarantine must free up space on overflow",
                              field=section.path if section else "config.quarantines",
                              line=section.line if section else 0)
        store = convert.Fields(root.first("quarantine_store"), QuarantineStoreSettings)
        store_settings = QuarantineStoreSettings(
            database_url=store("database_url", str),
            bodies=store("bodies", convert.choice("disk", "database")),
            max_size_mb=store("max_size_mb", convert.non_negative),
            expiry_interval_seconds=store("expiry_interval_seconds", convert.seconds),
            node_name=store("node_name", str),
        )
        api = root.first("api")
        api_settings = ApiSettings()
        if api is not None:
            tokens: list[ApiToken] = []
            for t in api.all("token"):
                granted = convert.value(t, "quarantines", str, "")
                token = convert.Fields(t, ApiToken)
                tokens.append(ApiToken(
                    token=token("token", str),
                    user=token("user", str),
                    role=token("role", convert.choice("admin", "operator", "helpdesk", "read-only",
                                               "custom")),
                    quarantines=tuple(x.strip() for x in granted.split(",") if x.strip())
                    or None))
                if tokens[-1].role == "custom" and tokens[-1].quarantines is None:
                    raise ConfigError("a custom role needs <quarantines>", field=t.path,
                                      line=t.line)
                if any(x.token == tokens[-1].token for x in tokens[:-1]):
                    raise ConfigError("this token value is already given to another <token>",
                                      field=f"{t.path}.value", line=t.line)
            settings = convert.Fields(api, ApiSettings)
            api_settings = ApiSettings(
                enabled=settings("enabled", convert.boolean),
                address=settings("address", convert.ip),
                port=settings("port", convert.port),
                tokens=tuple(tokens),
                max_body_bytes=settings("max_body_bytes", convert.positive_int),
                max_mids=settings("max_mids", convert.positive_int))
        return {"quarantines": tuple(definitions), "quarantine_store": store_settings,
                "api": api_settings}

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

    def _check_interface(self, node: Node, name: str, interfaces: tuple[Interface, ...]) -> None:
        if not any(i.name == name for i in interfaces):
            where = node.first("interface_name") or node
            known = ", ".join(repr(i.name) for i in interfaces)
            raise ConfigError(f"no interface named {name!r} (known: {known})",
                              field=where.path, line=where.line)

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
            self._check_interface(node, listener.interface_name, interfaces)
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
        self._check_interface(node, interface_name, interfaces)
        return SshSettings(
            enabled=fields("enabled", convert.boolean),
            interface_name=interface_name,
            port=fields("port", convert.port),
            timeout_seconds=fields("timeout_seconds", convert.seconds),
        )

    def _pvo(self, root: Node, role: str, interfaces: tuple[Interface, ...]) -> PvoSettings:
        node = root.require("pvo_quarantines")
        fields = convert.Fields(node, PvoSettings)
        interface_name = fields("interface_name", str, default=interfaces[0].name)
        self._check_interface(node, interface_name, interfaces)
        gateways: list[GatewayRecord] = []
        section = node.first("gateways")
        for g in ([] if section is None else section.all("gateway")):
            gateway = convert.Fields(g, GatewayRecord)
            record = GatewayRecord(
                hostname=gateway("hostname", str),
                address=gateway("address", convert.ip),
                cpq_port=gateway("cpq_port", convert.port),
                ssh_port=gateway("ssh_port", convert.port),
            )
            if any(x.hostname.lower() == record.hostname.lower() for x in gateways):
                raise ConfigError(f"duplicate gateway {record.hostname!r}", field=g.path,
                                  line=g.line)
            gateways.append(record)
        manager_address: str | None = fields("manager_address", str)
        manager_port = fields("manager_port", convert.port)
        manager_hostname: str | None = fields("manager_hostname", str)
        managers = self._managers(node, role)
        if managers:
            for tag in ("manager_address", "manager_port", "manager_hostname"):
                single = node.first(tag)
                if single is not None:
                    raise ConfigError(f"<{tag}> and <managers> both name managers: list every "
                                      "manager under <managers>", field=single.path,
                                      line=single.line)
            first = managers[0]
            manager_address, manager_port = first.address, first.port
            manager_hostname = first.hostname
        enabled = fields("enabled", convert.boolean)
        if role == ROLE_GATEWAY and enabled and not manager_address:
            raise ConfigError("a gateway with PVO enabled needs <managers> (or "
                              "<manager_address>)",
                              field=f"{node.path}.manager_address", line=node.line)
        return PvoSettings(
            enabled=enabled, interface_name=interface_name,
            port=fields("port", convert.port),
            manager_address=manager_address,
            manager_port=manager_port,
            manager_hostname=manager_hostname,
            gateways=tuple(gateways),
            managers=managers,
        )

    def _managers(self, pvo: Node, role: str) -> tuple[ManagerRecord, ...]:
        """`<managers>`: a gateway's managers, in the order it delivers to them, each
        with the hostname its CPQ certificate must carry."""
        section = pvo.first("managers")
        if section is None:
            return ()
        if role != ROLE_GATEWAY:
            raise ConfigError("<managers> is a gateway's setting: a manager lists its "
                              "gateways under <gateways>", field=section.path,
                              line=section.line)
        found: list[ManagerRecord] = []
        for m in section.all("manager"):
            read = convert.Fields(m, ManagerRecord)
            address = read("address", str)
            record = ManagerRecord(address=address, hostname=read("hostname", str),
                                   port=read("port", convert.port))
            for other in found:
                if (other.hostname or "").lower() == (record.hostname or "").lower():
                    raise ConfigError(f"duplicate manager hostname {record.hostname!r}",
                                      field=m.path, line=m.line)
                if (other.address, other.port) == (record.address, record.port):
                    raise ConfigError(f"duplicate manager address {address}:{record.port}",
                                      field=m.path, line=m.line)
            found.append(record)
        if not found:
            raise ConfigError("<managers> lists no <manager>", field=section.path,
                              line=section.line)
        return tuple(found)

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

    def _scan(self, root: Node) -> ScanSettings:
        named = root.first("policy_quarantines")
        custom = () if named is None else tuple(
            q.text.strip() for q in named.all("quarantine") if q.text.strip())
        quarantines = (*BUILTIN_QUARANTINES, *custom)
        filters: list[ContentFilter] = []
        section = root.first("content_filters")
        for f in ([] if section is None else section.all("content_filter")):
            fields = convert.Fields(f, ContentFilter)
            flt = ContentFilter(
                name=fields("name", str),
                header=fields("header", str),
                pattern=fields("pattern", _regex),
                quarantine=fields("quarantine", str),
            )
            if flt.quarantine.lower() not in {q.lower() for q in quarantines}:
                where = f.first("quarantine") or f
                raise ConfigError(f"unknown quarantine {flt.quarantine!r} (known: "
                                  f"{', '.join(quarantines)})", field=where.path,
                                  line=where.line)
            filters.append(flt)
        rules_node = None if section is None else section.first("rules")
        av = root.first("antivirus")
        outbreak = root.first("outbreak_filters")
        urls = () if outbreak is None else tuple(
            u.text.strip().lower() for u in outbreak.all("url") if u.text.strip())
        fields = convert.Fields(root, ScanSettings)
        return ScanSettings(
            content_filters=tuple(filters),
            antivirus_enabled=fields("antivirus_enabled", convert.boolean),
            outbreak_enabled=fields("outbreak_enabled", convert.boolean),
            outbreak_urls=urls,
            message_filters=_filter_text(root.first("message_filters"), quarantines),
            content_filter_rules=_filter_text(rules_node, quarantines),
            antivirus=self._antivirus(av),
            outbreak=self._outbreak(outbreak),
            quarantines=quarantines,
            stage_timeout_seconds=fields("stage_timeout_seconds", convert.seconds),
            retry_seconds=fields("retry_seconds", convert.seconds),
            processes=fields("processes", convert.positive_int),
            max_mime_depth=fields("max_mime_depth", convert.positive_int),
            max_mime_parts=fields("max_mime_parts", convert.positive_int),
            max_headers=fields("max_headers", convert.positive_int),
            max_temporary_failures=fields("max_temporary_failures", convert.positive_int),
            policies=self._mail_policies(root, quarantines),
        )

    def _mail_policies(self, root: Node, quarantines: tuple[str, ...]) -> tuple[MailPolicy, ...]:
        section = root.first("mail_policies")
        result: list[MailPolicy] = []
        for node in ([] if section is None else section.all("policy")):
            fields = convert.Fields(node, MailPolicy)
            name = fields("name", str)
            if name.upper() == "DEFAULT" or any(p.name == name for p in result):
                raise ConfigError(f"duplicate or reserved policy name {name!r}",
                                  field=node.path, line=node.line)
            recipients = tuple(_regex_node(r) for r in node.all("recipient"))
            if not recipients:
                raise node.error("a mail policy needs at least one <recipient> (a regex)")
            result.append(MailPolicy(
                name=name, recipients=recipients,
                antivirus_enabled=fields("antivirus_enabled", convert.boolean),
                outbreak_enabled=fields("outbreak_enabled", convert.boolean),
                content_filter_rules=(None if node.first("content_filters") is None else
                                      _filter_text(node.first("content_filters"), quarantines)),
            ))
        return tuple(result)

    def _antivirus(self, node: Node | None) -> AntivirusSettings:
        if node is None:
            return AntivirusSettings()
        fields = convert.Fields(node, AntivirusSettings)
        socket_path = fields("clamd_socket", str)
        if socket_path and not Path(socket_path).is_absolute():
            socket_path = str(self.base / socket_path)
        settings = AntivirusSettings(
            clamd_socket=socket_path,
            clamd_host=fields("clamd_host", str),
            clamd_port=fields("clamd_port", convert.port),
            timeout_seconds=fields("timeout_seconds", convert.seconds),
            unscannable_action=fields("unscannable_action", convert.choice(*UNSCANNABLE_ACTIONS)),
        )
        if settings.clamd_socket and settings.clamd_host:
            where = node.first("clamd_host") or node
            raise ConfigError("set clamd_socket or clamd_host, not both", field=where.path,
                              line=where.line)
        return settings

    def _outbreak(self, node: Node | None) -> OutbreakSettings:
        if node is None:
            return OutbreakSettings()
        rules_file = (self._path(node, "rules_file", must_exist=False)
                      if node.first("rules_file") is not None else None)
        fields = convert.Fields(node, OutbreakSettings)
        return OutbreakSettings(
            rules_file=rules_file,
            quarantine_threat_level=fields("quarantine_threat_level", _threat_level),
            retention_viral_seconds=fields("retention_viral_seconds", convert.seconds),
            retention_other_seconds=fields("retention_other_seconds", convert.seconds),
            check_interval_seconds=fields("check_interval_seconds", convert.seconds),
        )


def _regex_node(node: Node) -> re.Pattern[str]:
    try:
        return re.compile(node.text.strip(), re.IGNORECASE)
    except re.error as exc:
        raise ConfigError(f"bad regular expression ({exc}): {node.text.strip()!r}",
                          field=node.path, line=node.line) from None


def _threat_level(raw: str) -> int:
    if raw not in ("1", "2", "3", "4", "5"):
        raise ValueError("not a threat level (1-5)")
    return int(raw)


def _filter_text(node: Node | None, quarantines: tuple[str, ...]) -> tuple[Filter, ...]:
    """Filters in the filter language; an error names the file line and the column."""
    if node is None:
        return ()
    try:
        return tuple(parse_filters(node.text, quarantines=quarantines))
    except FilterSyntaxError as exc:
        raise ConfigError(f"column {exc.column}: {exc.message}", field=node.path,
                          line=node.line + exc.line - 1) from None


def _regex(raw: str) -> re.Pattern[str]:
    try:
        return re.compile(raw)
    except re.error as exc:
        raise ValueError(f"bad regular expression ({exc})") from None
