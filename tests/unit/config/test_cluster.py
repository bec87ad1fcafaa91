"""Cluster levels and the PVO interface rule: pure functions and the loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from pvoq.config.cluster import (
    CLUSTER,
    MACHINE,
    MachineView,
    check_pvo_interface,
    effective_root,
    machine_views,
    merge_levels,
    parse_layout,
)
from pvoq.config.errors import ConfigError
from pvoq.config.loader import load_config
from pvoq.config.xmltree import parse_xml

_IFACE = ("<interface><interface_name>{name}</interface_name><ip>{ip}</ip></interface>")


def cluster_xml(machines: dict[str, list[str]], *, this: str = "gw1.example.test",
                pvo_interface: str = "Incoming Mail", group_pvo: str | None = None,
                machine_pvo: dict[str, str] | None = None) -> str:
    """A clustered gateway file: cluster-level PVO, interfaces at machine level."""
    parts = []
    for n, (name, ifaces) in enumerate(machines.items(), 1):
        ifx = "".join(_IFACE.format(name=i, ip=f"10.0.{n}.{k}") for k, i in enumerate(ifaces, 1))
        pvo = ""
        if machine_pvo and name in machine_pvo:
            pvo = (f"<pvo_quarantines><manager_address>10.9.9.9</manager_address>"
                   f"<interface_name>{machine_pvo[name]}</interface_name></pvo_quarantines>")
        parts.append(f"<machine><machine_name>{name}</machine_name><group_name>dc1"
                     f"</group_name><settings><interfaces>{ifx}</interfaces>{pvo}</settings>"
                     "</machine>")
    group = ("" if group_pvo is None else
             f"<pvo_quarantines><manager_address>10.9.9.9</manager_address><interface_name>"
             f"{group_pvo}</interface_name></pvo_quarantines>")
    return f"""<?xml version="1.0"?>
<config>
  <system><role>gateway</role><hostname>{this}</hostname>
    <serial_number>S-1</serial_number><data_dir>data</data_dir></system>
  <cluster>
    <cluster_name>east</cluster_name>
    <this_machine>{this}</this_machine>
    <group><group_name>dc1</group_name><settings>{group}</settings></group>
    {"".join(parts)}
  </cluster>
  <interfaces>{_IFACE.format(name="Management", ip="10.0.0.1")}</interfaces>
  <pvo_quarantines>
    <enabled>true</enabled>
    <interface_name>{pvo_interface}</interface_name>
    <port>7025</port>
    <manager_address>10.9.9.9</manager_address>
  </pvo_quarantines>
  <cpq_certificate><ca_certificate>ca.pem</ca_certificate>
    <certificate>cpq.pem</certificate><private_key>cpq.key</private_key></cpq_certificate>
</config>
"""


def _layout(text: str):
    layout = parse_layout(parse_xml(text.encode(), path="cluster.xml"))
    assert layout is not None
    return layout


class TestMergeLevels:
    def test_machine_level_wins_over_group_and_cluster(self) -> None:
        """A setting at machine level overrides the group's and the cluster's."""
        merged = merge_levels({"a": 1, "b": 1, "c": 1}, {"b": 2, "c": 2}, {"c": 3},
                              group_name="dc1")
        assert merged == {"a": (1, CLUSTER), "b": (2, "group dc1"), "c": (3, MACHINE)}

    def test_settings_only_at_lower_levels_are_kept(self) -> None:
        """A section that the cluster level lacks comes from the group or the machine."""
        merged = merge_levels({}, {"x": "g"}, {"y": "m"}, group_name="dc2")
        assert merged == {"x": ("g", "group dc2"), "y": ("m", MACHINE)}


class TestPvoInterfaceRule:
    def test_every_machine_has_the_interface(self) -> None:
        """No problem when each machine has the interface named for PVO."""
        views = [MachineView("gw1", ("Management", "Incoming Mail"), "Incoming Mail", CLUSTER),
                 MachineView("gw2", ("Incoming Mail",), "Incoming Mail", CLUSTER)]
        assert check_pvo_interface(views) == []

    def test_the_machine_that_lacks_it_is_named(self) -> None:
        """The problem line names the machine, the interface, the level and what it has."""
        views = [MachineView("gw1", ("Incoming Mail",), "Incoming Mail", CLUSTER),
                 MachineView("gw2", ("Management", "Data 1"), "Incoming Mail", CLUSTER)]
        assert check_pvo_interface(views) == [
            "machine gw2 lacks interface 'Incoming Mail' named for PVO at cluster level "
            "(its interfaces: 'Management', 'Data 1')"]

    def test_no_interface_named_means_nothing_to_check(self) -> None:
        """PVO settings that name no interface use each machine's first one."""
        assert check_pvo_interface([MachineView("gw1", (), None, CLUSTER)]) == []


class TestLayout:
    def test_views_come_from_each_machines_effective_sections(self) -> None:
        """Interfaces at machine level and PVO at cluster level make each machine's view."""
        layout = _layout(cluster_xml({"gw1.example.test": ["Management", "Incoming Mail"],
                                      "gw2.example.test": ["Management"]}))
        views = {v.name: v for v in machine_views(layout)}
        assert views["gw2.example.test"].interfaces == ("Management",)
        assert views["gw2.example.test"].pvo_interface == "Incoming Mail"
        assert views["gw2.example.test"].pvo_level == CLUSTER

    def test_group_level_pvo_overrides_the_cluster_level(self) -> None:
        """A group's PVO settings replace the cluster's for its machines."""
        layout = _layout(cluster_xml({"gw1.example.test": ["Management"]},
                                     group_pvo="Management"))
        (view,) = machine_views(layout)
        assert (view.pvo_interface, view.pvo_level) == ("Management", "group dc1")

    def test_effective_root_refuses_and_names_the_machine(self) -> None:
        """PVO settings do not apply while another machine lacks the interface."""
        text = cluster_xml({"gw1.example.test": ["Incoming Mail"],
                            "gw2.example.test": ["Management"]})
        root = parse_xml(text.encode(), path="c.xml")
        layout = _layout(text)
        with pytest.raises(ConfigError) as caught:
            effective_root(root, layout)
        assert "machine gw2.example.test lacks interface 'Incoming Mail'" in str(caught.value)
        assert caught.value.field == "config.cluster.machine[2]"

    def test_this_machine_must_be_a_member(self) -> None:
        """A `this_machine` that names no machine of the cluster is refused."""
        with pytest.raises(ConfigError, match="is not one of the cluster's machines"):
            _layout(cluster_xml({"gw1.example.test": ["Incoming Mail"]}, this="gw9"))

    def test_unknown_group_is_refused(self) -> None:
        """A machine in a group that is not defined is refused with its line."""
        text = cluster_xml({"gw1.example.test": ["Incoming Mail"]}).replace(
            "<group><group_name>dc1</group_name>", "<group><group_name>dc0</group_name>")
        with pytest.raises(ConfigError, match="no group named 'dc1'"):
            _layout(text)


class TestLoadClustered:
    @pytest.fixture
    def files(self, tmp_path: Path) -> Path:
        for name in ("ca.pem", "cpq.pem", "cpq.key"):
            (tmp_path / name).write_text("placeholder")
        return tmp_path

    def test_machine_level_interfaces_and_cluster_info_are_loaded(self, files: Path) -> None:
        """The loaded configuration is this machine's, with machine-level interfaces."""
        path = files / "gw.xml"
        path.write_text(cluster_xml({"gw1.example.test": ["Management", "Incoming Mail"],
                                     "gw2.example.test": ["Incoming Mail"]}))
        cfg = load_config(path)
        assert [i.name for i in cfg.interfaces] == ["Management", "Incoming Mail"]
        assert cfg.interface("Incoming Mail").ip == "10.0.1.2"  # type: ignore[union-attr]
        assert cfg.pvo.interface_name == "Incoming Mail"
        assert cfg.cluster is not None
        assert cfg.cluster.machines == ("gw1.example.test", "gw2.example.test")
        assert cfg.cluster.levels["interfaces"] == MACHINE
        assert cfg.cluster.levels["pvo_quarantines"] == CLUSTER

    def test_machine_level_pvo_override_wins(self, files: Path) -> None:
        """A machine's own PVO settings replace the cluster level for that machine."""
        path = files / "gw.xml"
        path.write_text(cluster_xml({"gw1.example.test": ["Management"]},
                                    pvo_interface="Nowhere",
                                    machine_pvo={"gw1.example.test": "Management"}))
        assert load_config(path).pvo.interface_name == "Management"

    def test_a_machine_lacking_the_interface_makes_the_file_refused(self, files: Path) -> None:
        """The loader's error names the file, the machine's line and the machine."""
        path = files / "gw.xml"
        path.write_text(cluster_xml({"gw1.example.test": ["Incoming Mail"],
                                     "gw2.example.test": ["Management"]}))
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        text = str(caught.value)
        assert text.startswith(f"{path}:")
        assert "config.cluster.machine[2]" in text and "gw2.example.test" in text
