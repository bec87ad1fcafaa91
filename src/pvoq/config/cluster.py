"""Clustered gateways: settings at cluster, group and machine level.

A clustered configuration file holds the whole cluster, as AsyncOS
replicates it to every machine. The sections directly under `<config>`
(`<interfaces>`, `<listeners>`, `<pvo_quarantines>`, ...) are the cluster
level; `<cluster>` names the cluster, the machine this file runs as
(`<this_machine>`), and `<group>`/`<machine>` elements whose `<settings>`
override whole sections. Machine level wins over group level, group level
over cluster level:

    <cluster>
      <cluster_name>east</cluster_name>
      <this_machine>gw1.example.test</this_machine>
      <group><group_name>dc1</group_name><settings>...</settings></group>
      <machine>
        <machine_name>gw1.example.test</machine_name>
        <group_name>dc1</group_name>
        <settings><interfaces>...</interfaces></settings>
      </machine>
    </cluster>

The seed's rule: the interface named for PVO at cluster level must exist on
every machine (*Network > IP Interfaces*); `check_pvo_interface` names each
machine that lacks it. The decisions (`merge_levels`, `check_pvo_interface`)
are plain functions; this module reads no file and opens no socket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pvoq.config.errors import ConfigError
from pvoq.config.xmltree import Node

T = TypeVar("T")

CLUSTER = "cluster"
MACHINE = "machine"
_NOT_SECTIONS = {"system", "cluster"}


def group_level(name: str) -> str:
    return f"group {name}"


def merge_levels(cluster: Mapping[str, T], group: Mapping[str, T],
                 machine: Mapping[str, T], *, group_name: str | None = None
                 ) -> dict[str, tuple[T, str]]:
    """Each setting with the level it comes from: machine over group over cluster."""
    result: dict[str, tuple[T, str]] = {k: (v, CLUSTER) for k, v in cluster.items()}
    result.update((k, (v, group_level(group_name or "?"))) for k, v in group.items())
    result.update((k, (v, MACHINE)) for k, v in machine.items())
    return result


@dataclass(frozen=True)
class MachineView:
    """What the PVO interface rule needs to know of one machine."""

    name: str
    interfaces: tuple[str, ...]
    pvo_interface: str | None
    pvo_level: str


def check_pvo_interface(machines: Sequence[MachineView]) -> list[str]:
    """One problem line per machine lacking the interface its PVO settings name."""
    problems = []
    for m in machines:
        if m.pvo_interface is None or m.pvo_interface in m.interfaces:
            continue
        known = ", ".join(repr(i) for i in m.interfaces) or "none"
        problems.append(f"machine {m.name} lacks interface {m.pvo_interface!r} named for PVO "
                        f"at {m.pvo_level} level (its interfaces: {known})")
    return problems


@dataclass(frozen=True)
class ClusterInfo:
    """The cluster this configuration belongs to, and where each section came from."""

    name: str
    machine: str
    group: str | None
    machines: tuple[str, ...]
    levels: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Machine:
    name: str
    group: str | None
    node: Node
    sections: dict[str, Node]


@dataclass
class ClusterLayout:
    """The parsed `<cluster>` element and the cluster-level sections."""

    name: str
    this_machine: str
    cluster: dict[str, Node]
    groups: dict[str, dict[str, Node]]
    machines: list[_Machine]

    def machine(self, name: str) -> _Machine | None:
        for m in self.machines:
            if m.name.lower() == name.lower():
                return m
        return None

    def sections(self, machine: _Machine) -> dict[str, tuple[Node, str]]:
        group = self.groups.get(machine.group or "", {})
        return merge_levels(self.cluster, group, machine.sections, group_name=machine.group)


def _sections(node: Node | None) -> dict[str, Node]:
    if node is None:
        return {}
    result: dict[str, Node] = {}
    for child in node.children:
        if child.tag in _NOT_SECTIONS:
            continue
        if child.tag in result:
            raise child.error(f"<{child.tag}> given twice at this level")
        result[child.tag] = child
    return result


def _text(node: Node, tag: str) -> str:
    found = node.require(tag)
    value = found.text.strip()
    if not value:
        raise found.error("empty value")
    return value


def parse_layout(root: Node) -> ClusterLayout | None:
    """The cluster layout of *root*, or None if the file is not clustered."""
    section = root.first("cluster")
    if section is None:
        return None
    groups: dict[str, dict[str, Node]] = {}
    for g in section.all("group"):
        name = _text(g, "group_name")
        if name in groups:
            raise g.error(f"duplicate group {name!r}")
        groups[name] = _sections(g.first("settings"))
    machines: list[_Machine] = []
    for m in section.all("machine"):
        name = _text(m, "machine_name")
        group_node = m.first("group_name")
        group = group_node.text.strip() if group_node is not None else None
        if group and group not in groups:
            where = group_node or m
            raise ConfigError(f"no group named {group!r} (known: "
                              f"{', '.join(repr(g) for g in groups) or 'none'})",
                              field=where.path, line=where.line)
        if any(x.name.lower() == name.lower() for x in machines):
            raise m.error(f"duplicate machine {name!r}")
        machines.append(_Machine(name, group or None, m, _sections(m.first("settings"))))
    if not machines:
        raise section.error("a cluster needs at least one <machine>")
    layout = ClusterLayout(name=_text(section, "cluster_name"),
                           this_machine=_text(section, "this_machine"),
                           cluster=_sections(root), groups=groups, machines=machines)
    if layout.machine(layout.this_machine) is None:
        where = section.require("this_machine")
        raise where.error(f"this_machine {layout.this_machine!r} is not one of the cluster's "
                          f"machines ({', '.join(m.name for m in machines)})")
    return layout


def machine_views(layout: ClusterLayout) -> list[MachineView]:
    """Each machine's interfaces and PVO interface, from its effective sections."""
    views = []
    for m in layout.machines:
        sections = layout.sections(m)
        interfaces: tuple[str, ...] = ()
        if "interfaces" in sections:
            interfaces = tuple(
                n.text.strip() for i in sections["interfaces"][0].all("interface")
                for n in i.all("interface_name"))
        pvo_interface, level = None, CLUSTER
        if "pvo_quarantines" in sections:
            pvo, level = sections["pvo_quarantines"]
            named = pvo.first("interface_name")
            pvo_interface = named.text.strip() if named is not None else None
        views.append(MachineView(m.name, interfaces, pvo_interface, level))
    return views


def effective_root(root: Node, layout: ClusterLayout) -> tuple[Node, ClusterInfo]:
    """The configuration of this machine: *root* with each section at its winning level.

    Raises `ConfigError` naming the first machine that lacks the PVO
    interface: PVO settings do not apply until every machine has it.
    """
    for view, machine in zip(machine_views(layout), layout.machines, strict=True):
        problems = check_pvo_interface([view])
        if problems:
            raise ConfigError(problems[0], field=machine.node.path, line=machine.node.line)
    this = layout.machine(layout.this_machine)
    assert this is not None, "parse_layout checks this_machine"
    sections = layout.sections(this)
    children = [c for c in root.children if c.tag == "system"]
    children += [node for node, _ in sections.values()]
    merged = Node(root.tag, root.line, root.path, dict(root.attrs), children, list(root.parts))
    info = ClusterInfo(name=layout.name, machine=this.name, group=this.group,
                       machines=tuple(m.name for m in layout.machines),
                       levels={tag: level for tag, (_, level) in sections.items()})
    return merged, info
