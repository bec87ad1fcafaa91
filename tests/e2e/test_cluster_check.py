"""`pvoq cluster check` and a clustered gateway's start, as the operator runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pvoq.config.template import ApplianceSpec
from pvoq.deploy import init_appliance


def _pvoq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", *args], capture_output=True,
                          text=True, timeout=60)


def _clustered(tmp_path: Path, gw2_interfaces: list[str]) -> Path:
    """A real gateway configuration turned into machine gw1 of a two-machine cluster."""
    path = init_appliance(tmp_path / "gw1", ApplianceSpec(
        role="gateway", hostname="gw1.example.test", serial="S-1", smtp_port=2525,
        cpq_port=7026), ca_dir=tmp_path / "ca")
    text = path.read_text()
    start, end = text.index("  <interfaces>"), text.index("</interfaces>") + len("</interfaces>")
    gw1_interfaces = text[start:end].strip()
    gw2 = "".join(f"<interface><interface_name>{name}</interface_name><ip>10.0.2.{n}</ip>"
                  f"</interface>" for n, name in enumerate(gw2_interfaces, 1))
    cluster = f"""  <cluster>
    <cluster_name>east</cluster_name>
    <this_machine>gw1.example.test</this_machine>
    <machine><machine_name>gw1.example.test</machine_name>
      <settings>{gw1_interfaces}</settings></machine>
    <machine><machine_name>gw2.example.test</machine_name>
      <settings><interfaces>{gw2}</interfaces></settings></machine>
  </cluster>
"""
    path.write_text(text[:start] + cluster + text[end:])
    return path


class TestClusterCheck:
    def test_every_machine_has_the_pvo_interface(self, tmp_path: Path) -> None:
        """Exit 0 and one ok line per machine when all have the interface."""
        path = _clustered(tmp_path, ["Management", "Incoming Mail"])
        result = _pvoq("cluster", "check", "-c", str(path))
        assert result.returncode == 0, result.stderr
        assert "Cluster east: 2 machines" in result.stdout
        assert ("gw2.example.test: PVO interface 'Incoming Mail' (cluster level): ok"
                in result.stdout)
        assert "The PVO interface exists on every machine." in result.stdout

    def test_the_machine_lacking_the_interface_is_named(self, tmp_path: Path) -> None:
        """Exit 1, and the error names gw2 and the interface it lacks."""
        path = _clustered(tmp_path, ["Management", "Data 1"])
        result = _pvoq("cluster", "check", "-c", str(path))
        assert result.returncode == 1
        assert "gw1.example.test: PVO interface 'Incoming Mail' (cluster level): ok" \
            in result.stdout
        assert ("Error: machine gw2.example.test lacks interface 'Incoming Mail' named for "
                "PVO at cluster level (its interfaces: 'Management', 'Data 1')") in result.stderr

    def test_a_file_without_a_cluster_is_a_usage_error(self, tmp_path: Path) -> None:
        """An unclustered configuration exits 2 with the file and the field."""
        path = init_appliance(tmp_path / "gw", ApplianceSpec(
            role="gateway", hostname="gw.example.test", serial="S-2"), ca_dir=tmp_path / "ca")
        result = _pvoq("cluster", "check", "-c", str(path))
        assert result.returncode == 2
        assert f"{path}: config.cluster: not a clustered configuration" in result.stderr


class TestClusteredGatewayStart:
    def test_gateway_refuses_to_start_until_every_machine_has_the_interface(
            self, tmp_path: Path) -> None:
        """The gateway exits 2 naming the machine; `config check` says the same."""
        path = _clustered(tmp_path, ["Management"])
        started = _pvoq("gateway", "run", "-c", str(path))
        assert started.returncode == 2
        assert "config.cluster.machine[2]" in started.stderr
        assert "machine gw2.example.test lacks interface 'Incoming Mail'" in started.stderr
        checked = _pvoq("config", "check", "-c", str(path))
        assert checked.returncode == 2
        assert "gw2.example.test" in checked.stderr
