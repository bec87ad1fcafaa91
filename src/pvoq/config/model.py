"""The appliance configuration as typed, immutable values, and their defaults.

`config.loader` builds these from the XML file; every other part of pvoq
reads them and never parses XML itself. Paths are absolute once loaded.

Every default is declared here, once: the field's default is what an
element left out of the file gives. Two kinds of field metadata tell the
loader the rest: `XML_TAG`, where a field is read when that is not the
element of its name (`scan_pipeline/retry_seconds`), and `FILE_DEFAULT`,
what a section written without the element gives when that is not the
field's default (a written `<ssh>` is enabled unless it says otherwise; a
listener's `listen_queue_size` has no default in code). `xml_tag` and
`file_default` read them; the loader, `pvoq init`'s template and the tests ask.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pvoq.config.filterlang import BUILTIN_QUARANTINES, BuiltinQuarantine, Filter
from pvoq.config.hat import Hat, Rat
from pvoq.config.web import WebSettings
from pvoq.maillog.settings import LogsConfig

if TYPE_CHECKING:
    from pvoq.config.cluster import ClusterInfo  # defusedxml: not for the scanner process

CPQ_DEFAULT_PORT = 7025
DEFAULT_MAX_CONN_PER_IP = 10
"""The per-address limit (`max_conn_per_ip`) of the mail-flow policies `pvoq init` writes for
a public listener: AsyncOS's default for its accepting policies."""
CPQ_MAX_CONN_PER_IP = 20
"""The same on a `cpq_listener`: a peer's delivery connections (`max_connections_per_host`,
10 by default) and its readiness checks, with room to spare."""
CPQ_LISTENER_NAME = "cpq_listener"
THE_CPQ_HOST = "the.cpq.host"
THE_CPQ_RELEASE_HOST = "the.cpq.release.host"
DEFAULT_CIPHERS = "HIGH:MEDIUM:-aNULL"



class Role(StrEnum):
    """What an appliance is (`<system><role>`)."""

    GATEWAY = "gateway"
    MANAGER = "manager"


class ListenerProtocol(StrEnum):
    """What a listener speaks: plain SMTP, or CPQ (the hidden `cpq_listener`)."""

    SMTP = "SMTP"
    CPQ = "CPQ"


class ListenerType(StrEnum):
    """AsyncOS's listener types: a public one receives from the Internet, a private one
    relays for inside hosts."""

    PUBLIC = "public"
    PRIVATE = "private"


ROLE_GATEWAY = Role.GATEWAY
ROLE_MANAGER = Role.MANAGER

XML_TAG = "pvoq.xml"
"""Field metadata: the element a field is read from, relative to its section, `/` between
levels, when it is not the element named as the field."""
FILE_DEFAULT = "pvoq.file_default"
"""Field metadata: what a written section gives when it leaves the element out, when that is
not the field's default; `MISSING` makes the element required in the file."""
RANGE = "pvoq.range"
"""Field metadata of every number: its `(low, high)` bounds, both included. The file's value
must be finite and within them; `convert.Fields` checks, and the error names the field, its
line and the range (`value_range` reads them; the README lists them)."""

PORTS = (1, 65535)
TIMEOUT = (0.01, 86400.0)
"""A timeout or an interval, in seconds: 10 ms to one day."""
LONG_PERIOD = (0.01, 3650 * 86400.0)
"""A retention or a lifetime, in seconds: up to ten years."""


def bounded(default: Any, bounds: tuple[float, float] = TIMEOUT, **metadata: Any) -> Any:
    """A numeric dataclass field with *default* and its `RANGE` *bounds*; *metadata*: `xml`
    (`XML_TAG`), `file_default` (`FILE_DEFAULT`). A field without a default spells its
    metadata out (`field(metadata={RANGE: ...})`)."""
    meta = {RANGE: bounds, **{_META[k]: v for k, v in metadata.items()}}
    return field(default=default, metadata=meta)


_META = {"xml": XML_TAG, "file_default": FILE_DEFAULT}


def _field(owner: type, name: str) -> Field[Any]:
    for f in fields(owner):
        if f.name == name:
            return f
    raise KeyError(f"{owner.__name__} has no field {name!r}")


def xml_tag(owner: type, name: str) -> str:
    """The element field *name* of the dataclass *owner* is read from (see `XML_TAG`)."""
    return str(_field(owner, name).metadata.get(XML_TAG, name))


def model_default(owner: type, name: str) -> Any:
    """Field *name*'s default in code (`MISSING`: none, the field is required)."""
    f = _field(owner, name)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def value_range(owner: type, name: str) -> tuple[float, float] | None:
    """The `RANGE` of field *name* of the dataclass *owner* (None: not a number)."""
    found = _field(owner, name).metadata.get(RANGE)
    return None if found is None else (found[0], found[1])


def file_default(owner: type, name: str) -> Any:
    """What field *name* is when its section is written without its element.

    `FILE_DEFAULT` if the field declares one, else its default in code;
    `MISSING` means the file must give the element.
    """
    f = _field(owner, name)
    if FILE_DEFAULT in f.metadata:
        return f.metadata[FILE_DEFAULT]
    return model_default(owner, name)


@dataclass(frozen=True)
class Interface:
    """A named IP interface (`Management`, `Incoming Mail`, ...)."""

    name: str = field(metadata={XML_TAG: "interface_name"})
    ip: str


@dataclass(frozen=True)
class Listener:
    """A public or private SMTP listener, or the hidden CPQ listener."""

    name: str = field(metadata={XML_TAG: "listener_name"})
    protocol: ListenerProtocol = field(metadata={FILE_DEFAULT: ListenerProtocol.SMTP})
    interface_name: str
    port: int = field(metadata={RANGE: PORTS, FILE_DEFAULT: 25})  # a CPQ listener's: CPQ_DEFAULT_PORT
    listen_queue_size: int = field(metadata={RANGE: (1, 65535), FILE_DEFAULT: 50})
    type: ListenerType = field(metadata={FILE_DEFAULT: ListenerType.PUBLIC})
    hat: Hat
    rat: Rat
    max_message_size: int = bounded(10 * 1024 * 1024, (1, 2**30))
    max_connections: int = bounded(300, (1, 100_000))  # concurrent sessions; more get 421
    timeout_seconds: float = bounded(300.0)  # idle time allowed per SMTP stage (RFC 5321 4.5.3.2)
    # Session limits (docs/architecture.md, "Limits"): NOOP, RSET, VRFY, EXPN, ETRN, HELP,
    # unknown and erroneous commands allowed before 421 (Postfix's smtpd_junk_command_limit;
    # the count starts again after each accepted message); a session's whole lifetime; on a
    # CPQ listener, the time from connect to a completed STARTTLS.
    max_junk_commands: int = bounded(100, (1, 1_000_000))
    max_session_seconds: float = bounded(900.0)
    starttls_deadline_seconds: float = bounded(10.0, (0.01, 3600.0))
    # Commands pipelined straight after the end of DATA: the message is accepted, the
    # commands refused with 554 and the connection closed (Postfix's
    # smtpd_forbid_unauth_pipelining). None: by the listener, on for a public SMTP listener.
    reject_unauth_pipelining: bool | None = None
    # A `Received:` line on top of each accepted message (RFC 5321 4.4; AsyncOS's
    # `<received_header>`). Never on a CPQ listener, whose transfers stay byte-identical.
    received_header: bool = True
    ssl_ciphers: str | None = None      # this listener's cipher list (default: inbound_ciphers)
    certificate: Path | None = None     # a public listener's STARTTLS certificate (PEM)
    private_key: Path | None = None
    generated: bool = False

    @property
    def is_cpq(self) -> bool:
        return self.protocol == ListenerProtocol.CPQ

    @property
    def refuses_pipelining_after_data(self) -> bool:
        """`reject_unauth_pipelining`, or by default: on for a public SMTP listener."""
        if self.reject_unauth_pipelining is not None:
            return self.reject_unauth_pipelining
        return self.type == "public" and not self.is_cpq


@dataclass(frozen=True)
class GatewayRecord:
    """The manager's record of one gateway whose quarantines it keeps."""

    hostname: str
    address: str
    cpq_port: int = bounded(CPQ_DEFAULT_PORT, PORTS)
    ssh_port: int | None = bounded(None, PORTS)  # default for `gateway add --ssh-port`


@dataclass(frozen=True)
class ManagerRecord:
    """A gateway's record of one manager (`<managers><manager>`): where it listens for CPQ
    and the name its CPQ certificate must carry (None: any manager certificate of the CA,
    only in the single `manager_address` form)."""

    address: str
    hostname: str | None
    port: int = bounded(CPQ_DEFAULT_PORT, PORTS)


@dataclass(frozen=True)
class PvoSettings:
    """Policy, Virus and Outbreak quarantine settings of either appliance.

    On a gateway: the managers, in order (`managers`; the single form
    `manager_address`, `manager_port`, `manager_hostname` is a list of one).
    On a manager: the gateways it serves. On both: the interface and port of
    the local `cpq_listener`.
    """

    enabled: bool = field(metadata={FILE_DEFAULT: True})
    interface_name: str                  # in the file, by default: the first interface
    port: int = bounded(CPQ_DEFAULT_PORT, PORTS)
    manager_address: str | None = None   # the first manager's (kept for the single form)
    manager_port: int = bounded(CPQ_DEFAULT_PORT, PORTS)
    manager_hostname: str | None = None  # when set, the manager's certificate must name it
    gateways: tuple[GatewayRecord, ...] = ()
    managers: tuple[ManagerRecord, ...] = ()

    def gateway(self, hostname: str) -> GatewayRecord | None:
        for g in self.gateways:
            if g.hostname.lower() == hostname.lower():
                return g
        return None

    @property
    def all_managers(self) -> tuple[ManagerRecord, ...]:
        """The managers in the order a gateway tries them: `managers`, or the one
        `manager_address` names (none when neither is set)."""
        if self.managers:
            return self.managers
        if self.manager_address:
            return (ManagerRecord(self.manager_address, self.manager_hostname,
                                  self.manager_port),)
        return ()

    def manager_named(self, name: str | None) -> ManagerRecord | None:
        """The manager whose registered hostname is *name* (a peer certificate's CN); with
        the single form and no hostname, that one manager, whatever the name."""
        for m in self.all_managers:
            if m.hostname is None or (name or "").lower() == m.hostname.lower():
                return m
        return None


@dataclass(frozen=True)
class SshSettings:
    """`<ssh>`: the gateway's SSH command service; the manager's lookup timeout."""

    enabled: bool = field(default=False, metadata={FILE_DEFAULT: True})
    interface_name: str | None = None    # a written <ssh>, by default: the first interface
    port: int = bounded(22, PORTS)
    timeout_seconds: float = bounded(10.0, (0.01, 3600.0))


@dataclass(frozen=True)
class CpqCertificate:
    """The hidden CPQ certificate: this appliance's key pair and the deployment CA."""

    ca_certificate: Path
    certificate: Path
    private_key: Path
    # the line of each element in the file (`config.certs` names it in its errors)
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class SslConfig:
    """OpenSSL cipher lists, as `sslconfig` sets them on AsyncOS."""

    inbound_ciphers: str = DEFAULT_CIPHERS
    outbound_ciphers: str = DEFAULT_CIPHERS


@dataclass(frozen=True)
class Route:
    """An SMTP route: mail for `domain` (or `ALL`) goes to host:port."""

    domain: str
    host: str
    port: int = bounded(25, PORTS)


@dataclass(frozen=True)
class DeliverySettings:
    routes: tuple[Route, ...] = ()
    retry_min_seconds: float = bounded(60.0, (0.01, 7 * 86400.0))
    retry_max_seconds: float = bounded(3600.0, (0.01, 7 * 86400.0))
    max_queue_lifetime_seconds: float = bounded(3 * 24 * 3600.0, (0.01, 365 * 86400.0))
    timeout_seconds: float = bounded(60.0)
    max_connections_per_host: int = bounded(10, (1, 10_000))

    def route_for(self, domain: str) -> Route | None:
        domain = domain.lower()
        fallback = None
        for r in self.routes:
            if r.domain.lower() == domain:
                return r
            if r.domain.upper() == "ALL" and fallback is None:
                fallback = r
        return fallback


@dataclass(frozen=True)
class ContentFilter:
    """A minimal content filter: a header matching a regex sends mail to a quarantine."""

    name: str
    header: str = field(metadata={FILE_DEFAULT: "Subject"})
    pattern: re.Pattern[str] = field(metadata={XML_TAG: "regex"})
    quarantine: str = BuiltinQuarantine.POLICY


UNSCANNABLE_ACTIONS = ("deliver", "quarantine", "drop", "bounce")


@dataclass(frozen=True)
class AntivirusSettings:
    """Where clamd listens (Unix socket or TCP); none set means the built-in EICAR check."""

    clamd_socket: str | None = None
    clamd_host: str | None = None
    clamd_port: int = bounded(3310, PORTS)
    timeout_seconds: float = bounded(30.0)
    unscannable_action: str = "deliver"  # for UNSCANNABLE and ENCRYPTED verdicts

    @property
    def uses_clamd(self) -> bool:
        return bool(self.clamd_socket or self.clamd_host)


@dataclass(frozen=True)
class OutbreakSettings:
    """The outbreak rules file and what a threat level means (AsyncOS defaults)."""

    rules_file: Path | None = None
    quarantine_threat_level: int = bounded(3, (1, 5))
    retention_viral_seconds: float = bounded(24 * 3600.0, LONG_PERIOD)
    retention_other_seconds: float = bounded(4 * 3600.0, LONG_PERIOD)
    check_interval_seconds: float = bounded(5.0)


@dataclass(frozen=True)
class MailPolicy:
    """A per-recipient mail policy: recipients matching it get its scanning settings.

    None means "as the default policy" (the top-level settings).
    """

    name: str
    recipients: tuple[re.Pattern[str], ...]
    antivirus_enabled: bool | None = field(default=None, metadata={XML_TAG: "antivirus"})
    outbreak_enabled: bool | None = field(default=None, metadata={XML_TAG: "outbreak_filters"})
    content_filter_rules: tuple[Filter, ...] | None = None

    def matches(self, address: str) -> bool:
        return any(p.search(address) for p in self.recipients)


@dataclass(frozen=True)
class ScanSettings:
    """The gateway's pipeline: filters (parsed), anti-virus, outbreak rules, timeouts."""

    content_filters: tuple[ContentFilter, ...] = ()
    antivirus_enabled: bool = field(default=True, metadata={XML_TAG: "antivirus/enabled"})
    outbreak_enabled: bool = field(default=True, metadata={XML_TAG: "outbreak_filters/enabled"})
    outbreak_urls: tuple[str, ...] = ()
    message_filters: tuple[Filter, ...] = ()
    content_filter_rules: tuple[Filter, ...] = ()
    antivirus: AntivirusSettings = field(default_factory=AntivirusSettings)
    outbreak: OutbreakSettings = field(default_factory=OutbreakSettings)
    quarantines: tuple[str, ...] = BUILTIN_QUARANTINES
    stage_timeout_seconds: float = bounded(10.0, xml="scan_pipeline/stage_timeout_seconds")
    retry_seconds: float = bounded(30.0, xml="scan_pipeline/retry_seconds")
    # scanner processes (scan.workers); None: by the CPUs
    processes: int | None = bounded(None, (1, 256), xml="scan_pipeline/processes")
    # limits of the MIME structure a scan takes (beyond them: unscannable)
    max_mime_depth: int = bounded(50, (1, 1000), xml="scan_pipeline/max_mime_depth")
    max_mime_parts: int = bounded(1000, (1, 1_000_000), xml="scan_pipeline/max_mime_parts")
    max_headers: int = bounded(1000, (1, 1_000_000), xml="scan_pipeline/max_headers")
    # temporary failures of one message (while others pass) before it is unscannable
    max_temporary_failures: int = bounded(5, (1, 1000),
                                          xml="scan_pipeline/max_temporary_failures")
    policies: tuple[MailPolicy, ...] = ()

    def policy_for(self, address: str) -> MailPolicy | None:
        """The first per-recipient policy *address* matches (None: the default policy)."""
        return next((p for p in self.policies if p.matches(address)), None)


RETENTION_DEFAULT = (10.0, "days")
"""A quarantine's `<retention>` and `<retention_unit>` when the file leaves them out."""


@dataclass(frozen=True)
class QuarantineDefinition:
    """One `<quarantine>` of the manager: retention, default action, overflow, early release."""

    name: str
    retention_seconds: float = field(metadata={RANGE: (1.0, LONG_PERIOD[1])})  # in the file: <retention> <retention_unit>
    default_action: str = "delete"          # release | delete
    free_up_space: bool = False
    subject_tag: str = field(default="", metadata={XML_TAG: "early_release/subject_tag"})
    subject_position: str = field(          # prepend | append
        default="prepend", metadata={XML_TAG: "early_release/subject_position"})
    x_header: str = field(default="", metadata={XML_TAG: "early_release/x_header"})
    strip_attachments: bool = field(
        default=False, metadata={XML_TAG: "early_release/strip_attachments"})


@dataclass(frozen=True)
class QuarantineStoreSettings:
    """`<quarantine_store>`: where the manager keeps the quarantines."""

    database_url: str | None = None         # default: SQLite in the data directory
    bodies: str = "disk"                    # disk | database
    # With bodies on disk, a body up to this size is kept in the database all the same
    # (committed with its row: no file, no fdatasync of its own); 0: every body a file.
    inline_body_max_kb: float = bounded(64.0, (0.0, 1024.0))
    max_size_mb: float = bounded(0.0, (0.0, 1e9))  # 0: no quota
    expiry_interval_seconds: float = bounded(60.0)
    node_name: str | None = None            # several managers on one database: unique names


@dataclass(frozen=True)
class ApiToken:
    """A REST API bearer token: who it is, its role, and (custom roles) its quarantines."""

    token: str = field(metadata={XML_TAG: "value"})
    user: str
    role: str = "read-only"
    quarantines: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ApiSettings:
    """`<api>`: the manager's REST API on 127.0.0.1 (or `address`)."""

    enabled: bool = field(default=False, metadata={FILE_DEFAULT: True})
    address: str = "127.0.0.1"
    port: int = bounded(0, PORTS, file_default=MISSING)  # required in a written <api>
    tokens: tuple[ApiToken, ...] = ()
    max_body_bytes: int = bounded(1024 * 1024, (1, 2**30))  # a larger request body is refused with 413
    max_mids: int = bounded(10_000, (1, 1_000_000))  # MIDs one request may name (400 beyond)


@dataclass(frozen=True)
class LogSubscriptionSettings:
    """`<log_subscription>`: the manager pulls its gateways' mail_logs over SSH (on by default)."""

    enabled: bool = True
    interval_seconds: float = bounded(60.0, (0.1, 86400.0))  # between pulls once caught up
    chunk_bytes: int = bounded(1024 * 1024, (4096, 64 * 1024 * 1024))  # per pull, at most
    chunk_lines: int = bounded(10_000, (1, 1_000_000))  # per pull, at most
    retention_days: float = bounded(30.0, (0.0, 36500.0))  # tracking data kept; 0: forever
    max_file_size: int = bounded(10 * 1024 * 1024, (1024, 1024**4))  # a kept copy rolls over


@dataclass(frozen=True)
class MetricsSettings:
    """`<metrics>`: Prometheus `/metrics` on its own port (`config.metrics` reads it)."""

    enabled: bool = field(default=False, metadata={FILE_DEFAULT: True})
    address: str = "127.0.0.1"
    port: int = bounded(0, PORTS, file_default=MISSING)  # required in a written <metrics>


@dataclass(frozen=True)
class Config:
    path: Path
    role: str
    hostname: str
    serial_number: str
    data_dir: Path
    interfaces: tuple[Interface, ...]
    listeners: tuple[Listener, ...]
    pvo: PvoSettings
    cpq_certificate: CpqCertificate
    ssl: SslConfig = field(default_factory=SslConfig)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    scan: ScanSettings = field(default_factory=ScanSettings)
    database_url: str | None = field(default=None,
                                     metadata={XML_TAG: "quarantine_store/database_url"})
    quarantines: tuple[QuarantineDefinition, ...] = ()
    quarantine_store: QuarantineStoreSettings = field(
        default_factory=QuarantineStoreSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    ssh: SshSettings = field(default_factory=SshSettings)
    logs: LogsConfig = field(default_factory=LogsConfig)  # <logs>: config.logs
    cluster: ClusterInfo | None = None
    web: WebSettings = field(default_factory=WebSettings)  # config.web: the console
    log_subscription: LogSubscriptionSettings = field(default_factory=LogSubscriptionSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)

    def interface(self, name: str) -> Interface | None:
        for i in self.interfaces:
            if i.name == name:
                return i
        return None

    @property
    def cpq_listener(self) -> Listener | None:
        for listener in self.listeners:
            if listener.is_cpq:
                return listener
        return None

    @property
    def admin_socket(self) -> Path:
        return self.data_dir / "admin.sock"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"
