"""`pvoq doctor` names each fault of the troubleshooting note, with its fix.

Each test injects its faults into a real deployment (processes, sockets,
TLS, files), several independent ones per deployment, then runs `pvoq doctor`
on the gateway and on the manager as an operator would.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pvoq.cpq.ca import CA_CERT_FILE, CA_KEY_FILE, create_ca, issue_certificate
from pvoq.quarantine import migrate
from pvoq.testing.localdeploy import GATEWAY, MANAGER, Deployment, wait_for

ANONYMOUS_FIRST = "aNULL:HIGH:@SECLEVEL=0"


def doctor(config: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    result = subprocess.run([sys.executable, "-m", "pvoq", "doctor", "-c", str(config),
                             "--json"], capture_output=True, text=True, timeout=120)
    report = json.loads(result.stdout)
    return result.returncode, {c["name"]: c for c in report["checks"]}


def line(report: dict[str, dict[str, Any]], name: str, status: str) -> dict[str, Any]:
    found = report.get(name)
    assert found is not None, f"no line {name!r} in {sorted(report)}"
    assert found["status"] == status, found
    return found


def set_tag(config: Path, tag: str, value: str) -> None:
    text, n = re.subn(rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", config.read_text())
    assert n == 1, tag
    config.write_text(text)


def expiring_certificate(ca_dir: Path, certs: Path, *, hostname: str, role: str,
                         days: int) -> None:
    """Replace *certs*/cpq.pem and cpq.key by a certificate of the deployment CA that
    expires in *days* days."""
    ca = x509.load_pem_x509_certificate((ca_dir / CA_CERT_FILE).read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY_FILE).read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                        role)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days, hours=12))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    (certs / "cpq.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (certs / "cpq.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def clustered(config: Path, gw2_interfaces: list[str]) -> None:
    """Turn *config* into machine gw1 of a cluster whose gw2 has *gw2_interfaces*."""
    text = config.read_text()
    start, end = text.index("  <interfaces>"), text.index("</interfaces>") + len("</interfaces>")
    gw2 = "".join(f"<interface><interface_name>{name}</interface_name><ip>10.0.2.{n}</ip>"
                  f"</interface>" for n, name in enumerate(gw2_interfaces, 1))
    config.write_text(text[:start] + f"""  <cluster>
    <cluster_name>east</cluster_name>
    <this_machine>{GATEWAY}</this_machine>
    <machine><machine_name>{GATEWAY}</machine_name>
      <settings>{text[start:end].strip()}</settings></machine>
    <machine><machine_name>gw2.pvoq.test</machine_name>
      <settings><interfaces>{gw2}</interfaces></settings></machine>
  </cluster>
""" + text[end:])


def add_gateway(dep: Deployment) -> str:
    """`gateway add` on the manager with a one-time token; the pinned fingerprint."""
    token = dep.admin(dep.gateway_config, "ssh.token")["data"]["token"]
    added = subprocess.run(
        [sys.executable, "-m", "pvoq", "cli", "-c", str(dep.manager_config), "gateway",
         "add", GATEWAY, "--host", dep.ip, "--ssh-port", str(dep.ports["gateway_ssh"]),
         "--token", token], capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    pinned = re.search(r"SHA256:\S+", added.stdout)
    assert pinned is not None
    return pinned.group(0)


@pytest.fixture
def ssh_deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(tmp_path / "deploy", retry_min_s=0.5, retry_max_s=2.0, ssh=True)
    dep.init()
    try:
        yield dep
    finally:
        dep.stop_all()


class TestManagerDownGatewayOffline:
    def test_the_faults_are_named_with_their_fixes(self, ssh_deployment: Deployment) -> None:
        """Manager down, a message stuck in the.cpq.host, the gateway Offline, a loose
        key file, a certificate expiring in 9 days, a store behind its schema, the
        manager's SSH key no longer authorized, then a cluster machine lacking the PVO
        interface."""
        dep = ssh_deployment
        gw_certs = dep.gateway_config.parent / "certs"
        expiring_certificate(dep.root / "ca", gw_certs, hostname=GATEWAY, role="gateway",
                             days=9)
        dep.start()
        add_gateway(dep)
        (dep.gateway_config.parent / "data" / "ssh" / "authorized_keys").write_text("")
        dep.stop("manager")
        dep.send(subject="Confidential plans", body="held for the manager")
        wait_for("a failed attempt on the.cpq.host", lambda: any(
            r.last_error for e in dep.spooled("gateway") for r in e.recipients
            if r.host == "the.cpq.host"), timeout_s=60)
        dep.admin(dep.gateway_config, "suspend")
        (gw_certs / "cpq.key").chmod(0o644)
        db = dep.manager_config.parent / "data" / "quarantine.db"
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '0003'")

        code, gw = doctor(dep.gateway_config)
        assert code == 1
        gwc = f"pvoq cli -c {dep.gateway_config.resolve()}"
        reach = line(gw, f"cpq reach manager {MANAGER}", "FAIL")
        assert "connect failed" in reach["observed"] and "refused" in reach["observed"]
        assert "pvoq manager run" in reach["fix"]
        queue = line(gw, "queue the.cpq.host", "FAIL")
        assert queue["observed"].startswith("1 message, oldest")
        assert "last error:" in queue["observed"]
        assert f"{gwc} delivernow the.cpq.host" in queue["fix"]
        offline = line(gw, "listeners", "FAIL")
        assert "system status Offline" in offline["observed"]
        assert offline["fix"] == f"{gwc} resume"
        assert line(gw, "delivery", "FAIL")["fix"] == f"{gwc} resumedel"
        expiring = line(gw, "certificate", "WARN")
        assert "(in 9 days)" in expiring["observed"]
        assert "--ca-dir" in expiring["fix"]
        key = gw_certs.resolve() / "cpq.key"
        loose = line(gw, "permissions", "FAIL")
        assert f"{key} is 0644" in loose["observed"]
        assert f"chmod 600 {key}" in loose["fix"]
        assert "manager" in line(gw, "enable readiness", "FAIL")["observed"]

        code, mgr = doctor(dep.manager_config)
        assert code == 1
        start = f"start it: pvoq manager run -c {dep.manager_config.resolve()}"
        assert line(mgr, "appliance", "FAIL")["fix"] == start
        assert "cannot run" in line(mgr, "listeners", "FAIL")["observed"]
        assert line(mgr, "listeners", "FAIL")["fix"] == start
        schema = line(mgr, "store schema", "FAIL")
        assert f"at revision 0003, behind {migrate.head()}" in schema["observed"]
        assert "migrates the store at start" in schema["fix"]
        unauthorized = line(mgr, f"ssh {GATEWAY}", "FAIL")
        assert "authentication failed" in unauthorized["observed"]
        assert "ssh authorize" in unauthorized["fix"]

        clustered(dep.gateway_config, ["Management", "Data 1"])
        code, gw = doctor(dep.gateway_config)
        assert code == 1
        cluster = line(gw, "cluster interface", "FAIL")
        assert "machine gw2.pvoq.test lacks interface 'Incoming Mail'" in cluster["observed"]
        assert "add the interface Incoming Mail" in cluster["fix"]
        assert line(gw, "configuration", "FAIL")


class TestCiphersNamesClamdAndHostKey:
    def test_the_faults_are_named_with_their_fixes(self, ssh_deployment: Deployment) -> None:
        """Anonymous cipher lists on both sides, a gateway certificate naming another host,
        clamd configured but not running, a wrong pinned SSH host key."""
        dep = ssh_deployment
        set_tag(dep.manager_config, "inbound_ciphers", ANONYMOUS_FIRST)
        set_tag(dep.gateway_config, "outbound_ciphers", ANONYMOUS_FIRST)
        issue_certificate(dep.root / "ca", dep.gateway_config.parent / "certs",
                          hostname="wrong.pvoq.test", role="gateway")
        clamd = dep.root / "no-clamd.sock"
        text = dep.gateway_config.read_text()
        dep.gateway_config.write_text(text.replace(
            "<antivirus>\n    <enabled>true</enabled>\n",
            f"<antivirus>\n    <enabled>true</enabled>\n    <clamd_socket>{clamd}"
            "</clamd_socket>\n", 1))
        dep.start()
        pinned = add_gateway(dep)
        dep.stop("gateway")  # a new host key: the gateway was reinstalled
        (dep.gateway_config.parent / "data" / "ssh" / "ssh_host_ed25519_key").unlink()
        dep.start_gateway()
        offered = dep.admin(dep.gateway_config, "ssh.show")["data"]["fingerprint"]
        assert offered != pinned

        code, gw = doctor(dep.gateway_config)
        assert code == 1
        static = line(gw, "ciphers ssl_config outbound_ciphers", "FAIL")
        assert "admits anonymous (aNULL) suites" in static["observed"]
        assert f"<outbound_ciphers>{ANONYMOUS_FIRST}:-aNULL</outbound_ciphers>" \
            in static["fix"]
        live = line(gw, f"tls negotiated manager {MANAGER}", "FAIL")
        assert "anonymous cipher" in live["observed"]
        assert "no certificate from server" in live["observed"]
        assert ":-aNULL" in live["fix"]
        own = line(gw, "certificate", "FAIL")
        assert "its CN is 'wrong.pvoq.test', not the hostname 'gw1.pvoq.test'" \
            in own["observed"]
        av = line(gw, "clamd", "FAIL")
        assert str(clamd) in av["observed"]
        assert "start clamd" in av["fix"]

        code, mgr = doctor(dep.manager_config)
        assert code == 1
        inbound = line(mgr, "ciphers ssl_config inbound_ciphers", "FAIL")
        assert f"<inbound_ciphers>{ANONYMOUS_FIRST}:-aNULL</inbound_ciphers>" \
            in inbound["fix"]
        name = line(mgr, f"cpq certificate gateway {GATEWAY}", "FAIL")
        assert "it names 'wrong.pvoq.test', not 'gw1.pvoq.test'" in name["observed"]
        ssh = line(mgr, f"ssh {GATEWAY}", "FAIL")
        assert f"host key mismatch (pinned {pinned}, offered {offered})" \
            in ssh["observed"]
        assert f"gateway add {GATEWAY}" in ssh["fix"] and "--replace" in ssh["fix"]

        dep.admin(dep.manager_config, "suspend")  # the manager Offline, seen from both sides
        code, gw = doctor(dep.gateway_config)
        refused = line(gw, f"cpq reach manager {MANAGER}", "FAIL")
        assert "Connection refused" in refused["observed"]
        assert "resumelisteners cpq_listener" in refused["fix"]
        code, mgr = doctor(dep.manager_config)
        offline = line(mgr, "listeners", "FAIL")
        assert "system status Offline" in offline["observed"]
        assert offline["fix"] == f"pvoq cli -c {dep.manager_config.resolve()} resume"


class TestAnotherCaAndOneListener:
    def test_the_faults_are_named_with_their_fixes(self, ssh_deployment: Deployment) -> None:
        """The manager's certificate from another CA; one gateway listener suspended (seen
        on the gateway, and by the manager over SSH)."""
        dep = ssh_deployment
        create_ca(dep.root / "other-ca", name="Some other CA")
        issue_certificate(dep.root / "other-ca", dep.manager_config.parent / "certs",
                          hostname=MANAGER, role="manager")
        dep.start()
        add_gateway(dep)
        listeners = dep.admin(dep.gateway_config, "listeners")["data"]["listeners"]
        public = listeners[0]["name"]
        dep.admin(dep.gateway_config, "suspendlisteners", {"listener": public})

        code, gw = doctor(dep.gateway_config)
        assert code == 1
        line(gw, f"cpq reach manager {MANAGER}", "OK")
        other = line(gw, f"cpq certificate manager {MANAGER}", "FAIL")
        assert "verify error" in other["observed"]
        assert "issued by 'Some other CA'" in other["observed"]
        assert "deployment's CA" in other["fix"]
        suspended = line(gw, "listeners", "FAIL")
        assert f"receiving suspended on {public}" in suspended["observed"]
        assert suspended["fix"] == (f"pvoq cli -c {dep.gateway_config.resolve()} "
                                    f"resumelisteners {public}")

        code, mgr = doctor(dep.manager_config)
        assert code == 1
        own = line(mgr, "certificate", "FAIL")
        assert "is issued by 'Some other CA', not by the deployment CA" in own["observed"]
        refused = line(mgr, f"cpq client certificate gateway {GATEWAY}", "FAIL")
        assert "does not accept this manager's CPQ certificate" in refused["observed"]
        assert "issued by the deployment CA" in refused["fix"]
        remote = line(mgr, f"listeners gateway {GATEWAY}", "FAIL")
        assert f"receiving suspended on {public}" in remote["observed"]
        assert remote["fix"] == f"pvoq cli -c GATEWAY resumelisteners {public}"
        line(mgr, f"ssh {GATEWAY}", "OK")
        line(mgr, f"clock skew {GATEWAY}", "OK")
