"""The appliance configuration as typed, immutable values.

`config.loader` builds these from the XML file; every other part of pvoq
reads them and never parses XML itself. Paths are absolute once loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pvoq.config.cluster import ClusterInfo
from pvoq.config.filterlang import BUILTIN_QUARANTINES, Filter
from pvoq.config.hat import Hat, Rat

CPQ_DEFAULT_PORT = 7025
CPQ_LISTENER_NAME = "cpq_listener"
THE_CPQ_HOST = "the.cpq.host"
THE_CPQ_RELEASE_HOST = "the.cpq.release.host"
DEFAULT_CIPHERS = "HIGH:MEDIUM:-aNULL"

ROLE_GATEWAY = "gateway"
ROLE_MANAGER = "manager"


@dataclass(frozen=True)
class Interface:
    """A named IP interface (`Management`, `Incoming Mail`, ...)."""

    name: str
    ip: str


@dataclass(frozen=True)
class Listener:
    """A public or private SMTP listener, or the hidden CPQ listener."""

    name: str
    protocol: str  # "SMTP" | "CPQ"
    interface_name: str
    port: int
    listen_queue_size: int
    type: str  # "public" | "private"
    hat: Hat
    rat: Rat
    max_message_size: int = 10 * 1024 * 1024
    max_connections: int = 300          # concurrent sessions; more get 421
    timeout_seconds: float = 300.0      # idle time allowed per SMTP stage (RFC 5321 4.5.3.2)
    ssl_ciphers: str | None = None      # this listener's cipher list (default: inbound_ciphers)
    certificate: Path | None = None     # a public listener's STARTTLS certificate (PEM)
    private_key: Path | None = None
    generated: bool = False

    @property
    def is_cpq(self) -> bool:
        return self.protocol == "CPQ"


@dataclass(frozen=True)
class GatewayRecord:
    """The manager's record of one gateway whose quarantines it keeps."""

    hostname: str
    address: str
    cpq_port: int = CPQ_DEFAULT_PORT
    ssh_port: int | None = None       # default for `gateway add --ssh-port`


@dataclass(frozen=True)
class PvoSettings:
    """Policy, Virus and Outbreak quarantine settings of either appliance.

    On a gateway: where the manager listens (`manager_address`, `manager_port`).
    On a manager: the gateways it serves. On both: the interface and port of
    the local `cpq_listener`.
    """

    enabled: bool
    interface_name: str
    port: int = CPQ_DEFAULT_PORT
    manager_address: str | None = None
    manager_port: int = CPQ_DEFAULT_PORT
    manager_hostname: str | None = None  # when set, the manager's certificate must name it
    gateways: tuple[GatewayRecord, ...] = ()

    def gateway(self, hostname: str) -> GatewayRecord | None:
        for g in self.gateways:
            if g.hostname.lower() == hostname.lower():
                return g
        return None


@dataclass(frozen=True)
class SshSettings:
    """`<ssh>`: the gateway's SSH command service; the manager's lookup timeout."""

    enabled: bool = False
    interface_name: str | None = None
    port: int = 22
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class CpqCertificate:
    """The hidden CPQ certificate: this appliance's key pair and the deployment CA."""

    ca_certificate: Path
    certificate: Path
    private_key: Path


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
    port: int = 25


@dataclass(frozen=True)
class DeliverySettings:
    routes: tuple[Route, ...] = ()
    retry_min_seconds: float = 60.0
    retry_max_seconds: float = 3600.0
    max_queue_lifetime_seconds: float = 3 * 24 * 3600.0
    timeout_seconds: float = 60.0
    max_connections_per_host: int = 10

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
    header: str
    pattern: re.Pattern[str]
    quarantine: str = "Policy"


UNSCANNABLE_ACTIONS = ("deliver", "quarantine", "drop", "bounce")


@dataclass(frozen=True)
class AntivirusSettings:
    """Where clamd listens (Unix socket or TCP); none set means the built-in EICAR check."""

    clamd_socket: str | None = None
    clamd_host: str | None = None
    clamd_port: int = 3310
    timeout_seconds: float = 30.0
    unscannable_action: str = "deliver"  # for UNSCANNABLE and ENCRYPTED verdicts

    @property
    def uses_clamd(self) -> bool:
        return bool(self.clamd_socket or self.clamd_host)


@dataclass(frozen=True)
class OutbreakSettings:
    """The outbreak rules file and what a threat level means (AsyncOS defaults)."""

    rules_file: Path | None = None
    quarantine_threat_level: int = 3
    retention_viral_seconds: float = 24 * 3600.0
    retention_other_seconds: float = 4 * 3600.0
    check_interval_seconds: float = 5.0


@dataclass(frozen=True)
class MailPolicy:
    """A per-recipient mail policy: recipients matching it get its scanning settings.

    None means "as the default policy" (the top-level settings).
    """

    name: str
    recipients: tuple[re.Pattern[str], ...]
    antivirus_enabled: bool | None = None
    outbreak_enabled: bool | None = None
    content_filter_rules: tuple[Filter, ...] | None = None

    def matches(self, address: str) -> bool:
        return any(p.search(address) for p in self.recipients)


@dataclass(frozen=True)
class ScanSettings:
    """The gateway's pipeline: filters (parsed), anti-virus, outbreak rules, timeouts."""

    content_filters: tuple[ContentFilter, ...] = ()
    antivirus_enabled: bool = True
    outbreak_enabled: bool = True
    outbreak_urls: tuple[str, ...] = ()
    message_filters: tuple[Filter, ...] = ()
    content_filter_rules: tuple[Filter, ...] = ()
    antivirus: AntivirusSettings = field(default_factory=AntivirusSettings)
    outbreak: OutbreakSettings = field(default_factory=OutbreakSettings)
    quarantines: tuple[str, ...] = BUILTIN_QUARANTINES
    stage_timeout_seconds: float = 10.0
    retry_seconds: float = 30.0
    processes: int | None = None  # scanner processes (scan.workers); None: by the CPUs
    policies: tuple[MailPolicy, ...] = ()

    def policy_for(self, address: str) -> MailPolicy | None:
        """The first per-recipient policy *address* matches (None: the default policy)."""
        return next((p for p in self.policies if p.matches(address)), None)


@dataclass(frozen=True)
class QuarantineDefinition:
    """One `<quarantine>` of the manager: retention, default action, overflow, early release."""

    name: str
    retention_seconds: float
    default_action: str = "delete"          # release | delete
    free_up_space: bool = False
    subject_tag: str = ""
    subject_position: str = "prepend"       # prepend | append
    x_header: str = ""
    strip_attachments: bool = False


@dataclass(frozen=True)
class QuarantineStoreSettings:
    """`<quarantine_store>`: where the manager keeps the quarantines."""

    database_url: str | None = None         # default: SQLite in the data directory
    bodies: str = "disk"                    # disk | database
    max_size_mb: float = 0.0                # 0: no quota
    expiry_interval_seconds: float = 60.0
    node_name: str | None = None            # several managers on one database: unique names


@dataclass(frozen=True)
class ApiToken:
    """A REST API bearer token: who it is, its role, and (custom roles) its quarantines."""

    token: str
    user: str
    role: str = "read-only"
    quarantines: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ApiSettings:
    """`<api>`: the manager's REST API on 127.0.0.1 (or `address`)."""

    enabled: bool = False
    address: str = "127.0.0.1"
    port: int = 0
    tokens: tuple[ApiToken, ...] = ()


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
    database_url: str | None = None
    quarantines: tuple[QuarantineDefinition, ...] = ()
    quarantine_store: QuarantineStoreSettings = field(
        default_factory=QuarantineStoreSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    ssh: SshSettings = field(default_factory=SshSettings)
    cluster: ClusterInfo | None = None

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
