"""Read `<pvo_quarantines>` (with a manager's `<gateways>`, a gateway's `<managers>`) from a
configuration file."""

from __future__ import annotations

from pvoq.config import convert
from pvoq.config.errors import ConfigError
from pvoq.config.loadcommon import check_interface
from pvoq.config.model import (
    ROLE_GATEWAY,
    GatewayRecord,
    Interface,
    ManagerRecord,
    PvoSettings,
)
from pvoq.config.xmltree import Node


def parse_pvo(root: Node, role: str, interfaces: tuple[Interface, ...]) -> PvoSettings:
    node = root.require("pvo_quarantines")
    fields = convert.Fields(node, PvoSettings)
    interface_name = fields("interface_name", str, default=interfaces[0].name)
    check_interface(node, interface_name, interfaces)
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
    managers = _managers(node, role)
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

def _managers(pvo: Node, role: str) -> tuple[ManagerRecord, ...]:
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
