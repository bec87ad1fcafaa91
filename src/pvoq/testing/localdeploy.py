"""A whole deployment on localhost: a manager, a gateway and a downstream sink,
each its own process, on free ports, in one directory.

Used by `pvoq demo` and by the end-to-end tests: both drive real processes
over real sockets. Every process it starts it stops, by PID.

The high-availability layout: `Deployment(managers=2, database_url=...)`
makes managers `manager`, `manager2`... on one PostgreSQL database (bodies
in the database), each with its own hostname, node name and CPQ certificate
from the one CA, and a gateway that lists them all, in order.
`init_manager` adds a manager the gateway does not list.

The web console: `Deployment(console=True, users=[("alice", "admin", "pw...")])`
serves each appliance's console over HTTPS (`console_url(name)`, trusting
`ca_file`) and adds those users to each appliance when it first starts.

`Deployment(env={"gateway": {...}})` adds to one process's environment (e.g.
libfaketime's variables, to run the gateway's clock ahead).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from pvoq.admin.protocol import AdminUnavailable, call
from pvoq.config.loader import load_config
from pvoq.config.template import ApplianceSpec
from pvoq.cpq.ca import CA_CERT_FILE
from pvoq.cpq.transfer import Origin, QuarantineRef, QuarantineTransfer, TransferRecipient
from pvoq.deploy import init_appliance
from pvoq.errors import PvoqError
from pvoq.spool.store import Entry, Spool
from pvoq.testing.ports import free_port

MANAGER = "manager.pvoq.test"
GATEWAY = "gw1.pvoq.test"
GATEWAY_SERIAL = "PVOQ-G-0001"
OUTBREAK_HOST = "outbreak-demo.example"


def quarantine_metadata(transfer_id: str, mid: int, size: int, *, reason: str,
                        received: float) -> dict[str, Any]:
    """The CPQ metadata of a quarantine transfer from the deployment's gateway (its MID
    *mid*): alice@sender.example to bob@example.com, to "Policy" for *reason*."""
    return QuarantineTransfer(
        transfer_id=transfer_id, origin=Origin(GATEWAY, GATEWAY_SERIAL, mid),
        sender="alice@sender.example", recipients=(TransferRecipient(0, "bob@example.com"),),
        quarantines=(QuarantineRef("Policy", reason, "content_filters"),),
        received=received, size=size).to_json()


# How long a process may take to be ready: a wait on its ready line, so only a loaded
# machine (parallel test workers beside other work) comes near it.
START_TIMEOUT_S = 120.0


class DeploymentError(PvoqError):
    """A step of the local deployment did not happen in time."""


def wait_for(what: str, predicate: Callable[[], Any], *, timeout_s: float = 30.0,
             interval_s: float = 0.1) -> Any:
    """Poll *predicate* until it returns a truthy value; bounded in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise DeploymentError(f"timed out after {timeout_s:.0f}s waiting for {what}")


@dataclass
class Deployment:
    root: Path
    ip: str = "127.0.0.1"
    retry_min_s: float = 1.0
    retry_max_s: float = 5.0
    ssh: bool = False  # the gateway runs its SSH command service on ports["gateway_ssh"]
    managers: int = 1  # how many managers the gateway lists: manager, manager2, ...
    database_url: str | None = None  # the managers' shared quarantine database
    # the web console on every appliance (HTTPS, certificates from the deployment's CA),
    # with these users (name, role, password[, granted quarantines for a custom role])
    # added to each when it first starts; passwords have 8 characters at least
    console: bool = False
    users: list[tuple[Any, ...]] = field(default_factory=list)
    metrics: bool = False  # each appliance serves /metrics on ports["<name>_metrics"]
    env: dict[str, dict[str, str]] = field(default_factory=dict)  # more environment, by process
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def manager_config(self) -> Path:
        return self.root / "manager" / "pvoq.xml"

    @property
    def manager_names(self) -> list[str]:
        """The managers the gateway lists, in its order: `manager`, `manager2`, ..."""
        return ["manager", *(f"manager{n}" for n in range(2, self.managers + 1))]

    def config_of(self, name: str) -> Path:
        """The configuration file of appliance *name* (`manager2`, `gateway`...)."""
        return self.root / name / "pvoq.xml"

    @staticmethod
    def hostname_of(name: str) -> str:
        """The hostname (and CPQ certificate name) of manager *name*."""
        return MANAGER if name == "manager" else f"{name}.pvoq.test"

    @property
    def gateway_config(self) -> Path:
        return self.root / "gateway" / "pvoq.xml"

    @property
    def sink_dir(self) -> Path:
        return self.root / "sink"

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        names = [f"{m}_cpq" for m in self.manager_names]
        names += ["gateway_cpq", "gateway_smtp", "sink"]
        if self.ssh:
            names.append("gateway_ssh")
        if self.console:
            names += [f"{m}_web" for m in self.manager_names] + ["gateway_web"]
        if self.metrics:
            names += [f"{n}_metrics" for n in (*self.manager_names, "gateway")]
        self.ports = {}
        for name in names:
            self._new_port(name)
        for name in self.manager_names:
            self.init_manager(name)
        listed = [(self.ip, self.ports[f"{m}_cpq"], self.hostname_of(m))
                  for m in self.manager_names]
        init_appliance(self.root / "gateway", ApplianceSpec(
            role="gateway", hostname=GATEWAY, serial=GATEWAY_SERIAL, ip=self.ip,
            cpq_port=self.ports["gateway_cpq"], smtp_port=self.ports["gateway_smtp"],
            domains=["example.com"], routes=[("ALL", f"{self.ip}:{self.ports['sink']}")],
            manager_address=self.ip, manager_port=self.ports["manager_cpq"],
            manager_hostname=MANAGER, managers=listed if self.managers > 1 else [],
            outbreak_urls=[OUTBREAK_HOST],
            ssh_port=self.ports.get("gateway_ssh"), metrics_port=self.ports.get("gateway_metrics"),
            retry_min_seconds=self.retry_min_s, retry_max_seconds=self.retry_max_s),
            ca_dir=self.root / "ca", web_port=self.ports.get("gateway_web"))

    @property
    def ca_file(self) -> Path:
        """The deployment CA's certificate: what a client of the consoles trusts."""
        return self.root / "ca" / CA_CERT_FILE

    def console_url(self, name: str) -> str:
        """The web console of appliance *name* (`manager`, `gateway`...)."""
        return f"https://{self.ip}:{self.ports[f'{name}_web']}"

    def add_users(self, name: str) -> None:
        """Add the deployment's `users` to appliance *name* (running)."""
        for user, role, password, *granted in self.users:
            quarantines = list(granted[0]) if granted else (["Policy"] if role == "custom"
                                                             else None)
            self.admin(self.config_of(name), "user.add",
                       {"name": user, "role": role, "password": password,
                        "quarantines": quarantines})

    def _new_port(self, name: str) -> int:
        port = free_port(self.ip)
        while port in self.ports.values():  # the kernel may hand a released port out again
            port = free_port(self.ip)
        self.ports[name] = port
        return port

    def init_manager(self, name: str) -> Path:
        """Write manager *name*'s configuration and certificate (from the deployment's CA):
        its own hostname, node name and CPQ port, the deployment's database if it has one.
        A manager made after `init` is not listed by the gateway."""
        port = self.ports.get(f"{name}_cpq") or self._new_port(f"{name}_cpq")
        serial = "PVOQ-M-0001" if name == "manager" else f"PVOQ-M-{name.upper()}"
        path = init_appliance(self.root / name, ApplianceSpec(
            role="manager", hostname=self.hostname_of(name), serial=serial, ip=self.ip,
            cpq_port=port, gateways=[(GATEWAY, self.ip, self.ports["gateway_cpq"])],
            routes=[("ALL", f"{self.ip}:{self.ports['sink']}")],  # the manager's own mail
            metrics_port=self.ports.get(f"{name}_metrics"),
            retry_min_seconds=self.retry_min_s, retry_max_seconds=self.retry_max_s),
            ca_dir=self.root / "ca", web_port=self.ports.get(f"{name}_web"))
        if self.database_url:
            path.write_text(path.read_text().replace("</config>", f"""\
  <quarantine_store>
    <database_url>{self.database_url}</database_url>
    <bodies>database</bodies>
    <node_name>{name}</node_name>
  </quarantine_store>
</config>"""))
        return path

    # -- processes ---------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        out = open(self.root / f"{name}.out", "ab")  # noqa: SIM115 (closed in stop)
        proc = subprocess.Popen([sys.executable, "-m", "pvoq", *args], stdout=out,
                                stderr=subprocess.STDOUT, cwd=self.root,
                                start_new_session=True, env={**os.environ,
                                                             **self.env.get(name, {})})
        out.close()
        self.procs[name] = proc
        return proc

    def start_sink(self) -> None:
        self._spawn("sink", ["sink", "--listen", f"{self.ip}:{self.ports['sink']}",
                             "--dir", str(self.sink_dir)])
        wait_for("the sink to listen", lambda: self._port_open(self.ports["sink"]),
                 timeout_s=START_TIMEOUT_S)

    def start_manager(self, name: str = "manager") -> None:
        config = self.config_of(name)
        first = self.root / self.manager_names[0] / "data" / "audit.key"
        mine = self.root / name / "data" / "audit.key"
        if self.database_url and first.exists() and not mine.exists():
            # managers sharing one database share its audit key (docs/operations.md)
            mine.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            shutil.copyfile(first, mine)
            mine.chmod(0o600)
        proc = self._spawn(name, ["manager", "run", "-c", str(config)])
        wait_for(f"{name} to be ready", lambda: self._ready(name, proc, config),
                 timeout_s=START_TIMEOUT_S)
        self._first_start(name)

    def _first_start(self, name: str) -> None:
        """Add the users to *name* the first time it starts (they persist after)."""
        if self.users and not (self.root / name / "data" / "users.json").exists():
            self.add_users(name)

    def start_gateway(self) -> None:
        proc = self._spawn("gateway", ["gateway", "run", "-c", str(self.gateway_config)])
        wait_for("the gateway to be ready",
                 lambda: self._ready("gateway", proc, self.gateway_config),
                 timeout_s=START_TIMEOUT_S)
        self._first_start("gateway")

    def start(self) -> None:
        self.start_sink()
        for name in self.manager_names:
            self.start_manager(name)
        self.start_gateway()

    def _port_open(self, port: int) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex((self.ip, port)) == 0

    def _admin_ready(self, config: Path) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                out = (self.root / f"{name}.out").read_text(errors="replace")[-2000:]
                raise DeploymentError(f"{name} exited with code {proc.returncode}:\n{out}")
        try:
            return bool(call(load_config(config).admin_socket, "status", timeout_s=2)["ok"])
        except (AdminUnavailable, OSError):
            return False

    def _ready(self, name: str, proc: subprocess.Popen[bytes], config: Path) -> bool:
        """The admin socket answers *and* the process printed its ready line: the socket
        answers a moment before the console, the metrics and the line (and a test may read
        the line or use the console as soon as this returns)."""
        if not self._admin_ready(config):
            return False
        out = (self.root / f"{name}.out").read_text(errors="replace")
        return f" ready (pid {proc.pid})" in out

    def stop(self, name: str, *, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int | None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout_s)
        return proc.returncode

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    # -- using it ------------------------------------------------------------------
    def send(self, *, subject: str, body: str, sender: str = "alice@sender.example",
             to: str = "bob@example.com", attachment: tuple[str, bytes] | None = None) -> bytes:
        """Send one message to the gateway; return its bytes as they went over the wire."""
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, to, subject
        msg["Message-ID"] = f"<{time.time_ns()}@sender.example>"
        msg.set_content(body)
        if attachment is not None:
            msg.add_attachment(attachment[1], maintype="application", subtype="octet-stream",
                               filename=attachment[0])
        wire = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
        with smtplib.SMTP(self.ip, self.ports["gateway_smtp"], timeout=30) as smtp:
            smtp.sendmail(sender, [to], wire)
        return wire

    def add_gateway_over_ssh(self, manager: str = "manager") -> None:
        """`pvoq cli gateway add` on *manager* with a one-time token from the gateway's SSH
        service (the deployment needs `ssh=True`), as an operator links them."""
        token = self.admin(self.gateway_config, "ssh.token")["data"]["token"]
        added = subprocess.run(
            [sys.executable, "-m", "pvoq", "cli", "-c", str(self.config_of(manager)), "gateway",
             "add", GATEWAY, "--host", self.ip, "--ssh-port", str(self.ports["gateway_ssh"]),
             "--token", token], capture_output=True, text=True, timeout=60)
        if added.returncode != 0:
            raise DeploymentError(f"gateway add: {added.stderr}")

    def admin(self, config: Path, command: str, args: dict[str, Any] | None = None) -> Any:
        response = call(load_config(config).admin_socket, command, args)
        if not response.get("ok"):
            raise DeploymentError(f"{command}: {response.get('error')}")
        return response

    def admin_error(self, config: Path, command: str,
                    args: dict[str, Any] | None = None) -> str:
        """The error text of *command*, which must fail."""
        response = call(load_config(config).admin_socket, command, args)
        if response.get("ok"):
            raise DeploymentError(f"{command} succeeded: {response}")
        return str(response.get("error"))

    def quarantined(self, manager: str = "manager") -> list[dict[str, Any]]:
        return self.admin(self.config_of(manager), "quarantine.list")["data"]["messages"]

    def delivered(self) -> list[tuple[dict[str, Any], bytes]]:
        """What the sink received, oldest first: (envelope, message bytes)."""
        if not self.sink_dir.exists():
            return []
        result = []
        for meta in sorted(self.sink_dir.glob("*.json"), key=lambda p: int(p.stem)):
            result.append((json.loads(meta.read_text()), meta.with_suffix(".eml").read_bytes()))
        return result

    def spooled(self, role: str = "gateway") -> list[Entry]:
        """The messages in *role*'s spool as committed now (a read-only view of its log)."""
        directory = self.root / role / "data" / "spool"
        if not directory.is_dir():
            return []
        spool = Spool(directory, readonly=True)
        try:
            return spool.recover()
        finally:
            spool.close()

    def mail_logs(self, role: str) -> list[str]:
        path = self.root / role / "data" / "logs" / "mail_logs"
        return path.read_text(errors="replace").splitlines() if path.exists() else []
