"""Render a working appliance configuration (what `pvoq init` writes).

The output is the same AsyncOS-style XML the loader reads, with the hidden
`cpq_listener` spelled out as the seed shows it, so an operator sees and can
edit every setting. The values it writes that are defaults come from
`config.model`, where each default is declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from pvoq.config.model import (
    CPQ_DEFAULT_PORT,
    CPQ_MAX_CONN_PER_IP,
    DEFAULT_CIPHERS,
    DEFAULT_MAX_CONN_PER_IP,
    ROLE_GATEWAY,
    AntivirusSettings,
    DeliverySettings,
    Listener,
    OutbreakSettings,
    SshSettings,
    file_default,
)


@dataclass
class ApplianceSpec:
    role: str
    hostname: str
    serial: str
    ip: str = "127.0.0.1"
    cpq_port: int = CPQ_DEFAULT_PORT
    # gateway
    smtp_port: int = file_default(Listener, "port")
    domains: list[str] = field(default_factory=lambda: ["example.com"])
    routes: list[tuple[str, str]] = field(default_factory=list)  # (domain, host:port)
    manager_address: str = "127.0.0.1"
    manager_port: int = CPQ_DEFAULT_PORT
    manager_hostname: str | None = None
    # several managers, in delivery order (address, port, hostname): written as <managers>
    # instead of manager_address/manager_port/manager_hostname
    managers: list[tuple[str, int, str]] = field(default_factory=list)
    outbreak_urls: list[str] = field(default_factory=list)
    clamd_socket: str | None = None       # None: the built-in EICAR check
    outbreak_rules_file: str | None = None
    # manager
    gateways: list[tuple[str, str, int]] = field(default_factory=list)  # (hostname, ip, port)
    ssh_port: int | None = None          # gateway: the SSH command service (None: off)
    ssh_timeout_seconds: float = SshSettings.timeout_seconds  # manager: SSH lookups of gateways
    retry_min_seconds: float = DeliverySettings.retry_min_seconds
    retry_max_seconds: float = DeliverySettings.retry_max_seconds
    metrics_port: int | None = None      # `<metrics>` on 127.0.0.1 at this port (None: off)


_LISTEN_QUEUE_SIZE = file_default(Listener, "listen_queue_size")


def _hat(relay_hosts: list[str], comment: str) -> str:
    members = "\n".join(f"  {h}" for h in relay_hosts)
    return (f"$RELAYED\n  RELAY {{max_conn_per_ip = {CPQ_MAX_CONN_PER_IP}}}\n"
            f"$BLOCKED\n  REJECT {{}}\nRELAYLIST:\n{members}\n"
            f"    $RELAYED ({comment})\nALL\n  $BLOCKED (Everyone else)\n")


def _listener(name: str, protocol: str, interface: str, port: int, kind: str, hat: str,
              rat: list[tuple[str, str]]) -> str:
    rat_xml = "".join(
        f"    <rat_entry>\n      <rat_address>{escape(a)}</rat_address>\n"
        f"      <access>{acc}</access>\n    </rat_entry>\n" for a, acc in rat)
    return (f"  <listener>\n    <listener_name>{escape(name)}</listener_name>\n"
            f"    <protocol>{protocol}</protocol>\n"
            f"    <interface_name>{escape(interface)}</interface_name>\n"
            f"    <port>{port}</port>\n"
            f"    <listen_queue_size>{_LISTEN_QUEUE_SIZE}</listen_queue_size>\n"
            f"    <type>{kind}</type>\n  <hat>\n{escape(hat)}  </hat>\n"
            f"  <rat>\n{rat_xml}  </rat>\n  </listener>\n")


def render(spec: ApplianceSpec) -> str:
    gateway = spec.role == ROLE_GATEWAY
    interface = "Management"
    listeners = ""
    if gateway:
        interface = "Incoming Mail"
        listeners += _listener(
            "IncomingMail", "SMTP", interface, spec.smtp_port, "public",
            f"$ACCEPTED\n  ACCEPT {{max_conn_per_ip = {DEFAULT_MAX_CONN_PER_IP}}}\n"
            "ALL\n  $ACCEPTED (Accept everyone; the RAT decides)\n",
            [(d, "ACCEPT") for d in spec.domains] + [("ALL", "REJECT")])
        relay = list(dict.fromkeys(a for a, _, _ in spec.managers)) or [spec.manager_address]
    else:
        relay = sorted({ip for _, ip, _ in spec.gateways}) or ["127.0.0.1"]
    listeners += _listener("cpq_listener", "CPQ", interface, spec.cpq_port, "private",
                           _hat(relay, "Only select hosts can relay from this box"),
                           [("ALL", "ACCEPT")])
    if gateway and spec.managers:
        pvo = "    <managers>\n" + "".join(
            f"      <manager>\n        <address>{escape(a)}</address>\n"
            f"        <port>{port}</port>\n        <hostname>{escape(h)}</hostname>\n"
            f"      </manager>\n" for a, port, h in spec.managers) + "    </managers>\n"
    elif gateway:
        pvo = (f"    <manager_address>{escape(spec.manager_address)}</manager_address>\n"
               f"    <manager_port>{spec.manager_port}</manager_port>\n")
        if spec.manager_hostname:
            pvo += f"    <manager_hostname>{escape(spec.manager_hostname)}</manager_hostname>\n"
    else:
        pvo = "    <gateways>\n" + "".join(
            f"      <gateway>\n        <hostname>{escape(h)}</hostname>\n"
            f"        <address>{ip}</address>\n        <cpq_port>{port}</cpq_port>\n"
            f"      </gateway>\n" for h, ip, port in spec.gateways) + "    </gateways>\n"
    ssh = ""
    if gateway and spec.ssh_port:
        ssh = (f"  <ssh>\n    <enabled>true</enabled>\n    <interface_name>{interface}"
               f"</interface_name>\n    <port>{spec.ssh_port}</port>\n  </ssh>\n")
    elif not gateway:
        ssh = (f"  <ssh>\n    <timeout_seconds>{spec.ssh_timeout_seconds:g}</timeout_seconds>\n"
               "  </ssh>\n")
    metrics = (f"  <metrics>\n    <address>127.0.0.1</address>\n    <port>{spec.metrics_port}"
               "</port>\n  </metrics>\n" if spec.metrics_port else "")
    routes = "".join(
        f"      <route><domain>{escape(d)}</domain><destination>{escape(dest)}</destination>"
        f"</route>\n" for d, dest in spec.routes)
    scan = ""
    if gateway:
        urls = "".join(f"    <url>{escape(u)}</url>\n" for u in spec.outbreak_urls)
        clamd = (f"    <clamd_socket>{escape(spec.clamd_socket)}</clamd_socket>\n"
                 f"    <timeout_seconds>{AntivirusSettings.timeout_seconds:g}</timeout_seconds>\n"
                 if spec.clamd_socket else "")
        rules = (f"    <rules_file>{escape(spec.outbreak_rules_file)}</rules_file>\n"
                 "    <quarantine_threat_level>"
                 f"{OutbreakSettings.quarantine_threat_level}</quarantine_threat_level>\n"
                 if spec.outbreak_rules_file else "")
        scan = (
            "  <message_filters>\n"
            '    no_exe: if (attachment-filename == "\\\\.(exe|scr|pif)$") '
            '{ quarantine("Policy"); }\n'
            "  </message_filters>\n"
            "  <content_filters>\n    <content_filter>\n"
            "      <name>confidential_subject</name>\n      <header>Subject</header>\n"
            "      <regex>(?i)\\bconfidential\\b</regex>\n      <quarantine>Policy</quarantine>\n"
            "    </content_filter>\n  </content_filters>\n"
            f"  <antivirus>\n    <enabled>true</enabled>\n{clamd}"
            f"    <unscannable_action>{AntivirusSettings.unscannable_action}"
            "</unscannable_action>\n  </antivirus>\n"
            f"  <outbreak_filters>\n    <enabled>true</enabled>\n{rules}{urls}"
            "  </outbreak_filters>\n")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- pvoq {spec.role} configuration. Paths are relative to this file. -->
<config>
  <system>
    <role>{spec.role}</role>
    <hostname>{escape(spec.hostname)}</hostname>
    <serial_number>{escape(spec.serial)}</serial_number>
    <data_dir>data</data_dir>
  </system>
  <interfaces>
    <interface>
      <interface_name>{interface}</interface_name>
      <ip>{spec.ip}</ip>
    </interface>
  </interfaces>
  <listeners>
{listeners}  </listeners>
  <pvo_quarantines>
    <enabled>true</enabled>
    <interface_name>{interface}</interface_name>
    <port>{spec.cpq_port}</port>
{pvo}  </pvo_quarantines>
{ssh}{metrics}  <cpq_certificate>
    <ca_certificate>certs/cpq-ca.pem</ca_certificate>
    <certificate>certs/cpq.pem</certificate>
    <private_key>certs/cpq.key</private_key>
  </cpq_certificate>
  <ssl_config>
    <inbound_ciphers>{DEFAULT_CIPHERS}</inbound_ciphers>
    <outbound_ciphers>{DEFAULT_CIPHERS}</outbound_ciphers>
  </ssl_config>
  <delivery>
    <retry_min_seconds>{spec.retry_min_seconds:g}</retry_min_seconds>
    <retry_max_seconds>{spec.retry_max_seconds:g}</retry_max_seconds>
    <timeout_seconds>{DeliverySettings.timeout_seconds:g}</timeout_seconds>
    <smtp_routes>
{routes}    </smtp_routes>
  </delivery>
{scan}</config>
"""
