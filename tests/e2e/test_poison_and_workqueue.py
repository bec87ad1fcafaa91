"""The work queue: pause and resume, and a message that keeps killing the gateway."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from pvoq.testing.localdeploy import Deployment, free_port, wait_for
from pvoq.testing.trace import relayed


def spool_cli(dep: Deployment, *args: str) -> str:
    """`pvoq cli -c GATEWAY spool ARGS...`: the operator's read-only view of the spool log."""
    return subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(dep.gateway_config),
                           "spool", *args], capture_output=True, text=True, timeout=60,
                          check=True).stdout


def cli_text(dep: Deployment, command: str) -> str:
    return dep.admin(dep.gateway_config, command)["text"]


class HungScanner:
    """A TCP peer that accepts scan requests and never answers: a scanner stuck on a message."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        self.held: list[socket.socket] = []
        self.accepted = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def hung(deployment: Deployment) -> Iterator[tuple[Deployment, HungScanner]]:
    scanner = HungScanner()
    config = deployment.gateway_config
    text = config.read_text().replace(
        "<antivirus>\n", f"<antivirus>\n    <clamd_host>127.0.0.1</clamd_host>\n"
        f"    <clamd_port>{scanner.port}</clamd_port>\n"
        "    <timeout_seconds>120</timeout_seconds>\n", 1)
    config.write_text(text)
    try:
        yield deployment, scanner
    finally:
        scanner.close()


class TestWorkqueue:
    def test_pause_holds_received_mail_unscanned_until_resume(
            self, running: Deployment) -> None:
        """A paused work queue keeps received mail in the spool; resume scans and delivers it."""
        assert cli_text(running, "workqueue.pause").startswith("Work queue paused.")
        sent = running.send(subject="hello", body="waits for the work queue")
        wait_for("the message counted in the work queue",
                 lambda: cli_text(running, "workqueue.status") ==
                 "Status: Paused by admin\nMessages: 1")
        assert running.delivered() == []
        listing = spool_cli(running, "list")
        assert re.search(r"^ +\d+  incoming +\d+s +\d+  <[^>]+> -> \S+ \(-, pending\)$",
                         listing, re.M), listing
        assert listing.rstrip().endswith("1 messages in the spool.")
        (spooled,) = running.spooled("gateway")
        mid = spooled.mid
        accepted = [line for line in running.mail_logs("gateway")
                    if f"ICID {spooled.icid} ACCEPT SG " in line]
        assert accepted and f" SG {spooled.meta['sender_group']} " in accepted[0]
        shown = spool_cli(running, "show", str(mid), "--body")
        assert f'"mid": {mid},' in shown and "waits for the work queue" in shown
        assert cli_text(running, "workqueue.resume") == "Work queue resumed."
        assert [relayed(c) for _, c in wait_for("delivered", running.delivered)] == [sent]
        assert cli_text(running, "workqueue.status") == "Status: Operating normally\nMessages: 0"


class TestPoisonMessage:
    def test_a_message_that_crashes_the_gateway_three_times_moves_to_bad(
            self, hung: tuple[Deployment, HungScanner]) -> None:
        """Killed three times while scanning one message, the gateway sets it aside and runs on."""
        dep, scanner = hung
        dep.start_sink()
        dep.start_gateway()
        dep.send(subject="poison", body="the scan of this never ends")
        spool = dep.root / "gateway" / "data" / "spool"
        for attempt in range(3):
            wait_for(f"scan attempt {attempt + 1}", scanner.accepted.is_set)
            scanner.accepted.clear()
            dep.stop("gateway", sig=signal.SIGKILL)
            dep.start_gateway()
        wait_for("the message in bad/", lambda: any((spool / "bad").glob("*.json")))
        assert dep.spooled("gateway") == []
        assert any("moved to" in line and "stopped the gateway 3 times" in line
                   for line in dep.mail_logs("gateway"))
        assert dep.admin(dep.gateway_config, "status")["data"]["system_status"] == "Online"
