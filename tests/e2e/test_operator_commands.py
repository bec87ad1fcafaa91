"""Operator commands as an administrator types them, against running appliances."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

from pvoq.testing.localdeploy import Deployment, wait_for
from pvoq.testing.trace import relayed


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60)


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def gateway_with_mail_for_a_down_manager(dep: Deployment, count: int) -> None:
    dep.start_sink()
    dep.start_gateway()
    for i in range(count):
        dep.send(subject=f"confidential {i}", body="for the manager", sender=f"s{i}@sender.example")
    wait_for("mail in the.cpq.host", lambda: dep.admin(dep.gateway_config, "status")["data"]
             ["messages_in_cpq_host"] == count)


class TestStatus:
    def test_status_has_the_asyncos_shape(self, running: Deployment) -> None:
        """status shows the system status, the three counter columns and the gauges."""
        running.send(subject="hello", body="x")
        wait_for("delivered", running.delivered)
        out = cli(running.gateway_config, "status").stdout
        assert re.search(r"^Status as of: +\w{3} \w{3} +\d+ [\d:]{8} \d{4}", out, re.M)
        assert "System status: Online" in out
        assert re.search(r"^Counters: +Reset +Uptime +Lifetime$", out, re.M)
        assert re.search(r"^ +Messages Received +1 +1 +1$", out, re.M)
        assert re.search(r"^ +Delivered Recipients +1 +1 +1$", out, re.M)
        assert re.search(r"^ +Messages In the\.cpq\.host +0$", out, re.M)
        manager = cli(running.manager_config, "status").stdout
        assert "Messages In Quarantine" in manager and "Policy, Virus and Outbreak" in manager

    def test_counters_survive_a_restart_in_the_lifetime_column(
            self, running: Deployment) -> None:
        """Lifetime counts carry over a restart; uptime counts start again."""
        running.send(subject="hello", body="x")
        wait_for("delivered", running.delivered)
        running.stop("gateway")
        running.start_gateway()
        counters = running.admin(running.gateway_config, "status")["data"]["counters"]
        assert counters["messages_received"] == [1, 0, 1]


class TestQueuesOfTheSpecialDestinations:
    def test_tophosts_hoststatus_showrecipients_on_the_cpq_host(
            self, deployment: Deployment) -> None:
        """the.cpq.host appears in tophosts, and hoststatus and showrecipients work on it."""
        gateway_with_mail_for_a_down_manager(deployment, 3)
        cfg = deployment.gateway_config
        top = cli(cfg, "tophosts").stdout
        assert re.search(r"^1 +\*the\.cpq\.host +3 +0 +0 +\d+ +0$", top, re.M)
        host = cli(cfg, "hoststatus", "the.cpq.host").stdout
        assert "Host mail status for: 'the.cpq.host'" in host
        assert "Host up/down:                down" in host
        assert re.search(r"Active Recipients +3$", host, re.M)
        assert cli(cfg, "hoststatus", "nowhere.example").stderr.strip() == (
            "No record of host: nowhere.example")
        shown = cli(cfg, "showrecipients", "--host", "the.cpq.host").stdout
        assert shown.splitlines()[0].split() == ["Message", "ID", "Bytes", "Sender", "Subject"]
        assert "s1@sender.example" in shown and "confidential 1" in shown
        assert re.search(r"^  \[0\] +\[\d+\] +bob@example\.com$", shown, re.M)
        by_sender = cli(cfg, "showrecipients", "--sender", "s2@sender.example").stdout
        assert "confidential 2" in by_sender and "confidential 1" not in by_sender

    def test_deleterecipients_on_the_cpq_host_never_reach_the_manager(
            self, deployment: Deployment) -> None:
        """Deleted from the.cpq.host, messages are gone: the manager, once up, never gets them."""
        dep = deployment
        gateway_with_mail_for_a_down_manager(dep, 3)
        cfg = dep.gateway_config
        one = cli(cfg, "deleterecipients", "--sender", "s0@sender.example")
        assert one.stdout.strip() == "1 messages deleted."
        rest = cli(cfg, "deleterecipients", "--host", "the.cpq.host")
        assert rest.stdout.strip() == "2 messages deleted."
        assert cli(cfg, "deleterecipients", "--host", "the.cpq.host").stdout.strip() == (
            "No messages deleted.")
        assert cli(cfg, "deleterecipients", "--host", "nowhere.example").stderr.strip() == (
            "No record of that host.")
        dep.start_manager()
        probe = dep.send(subject="confidential probe", body="sent after the deletion")
        rows = wait_for("the probe on the manager", dep.quarantined)
        assert [m["subject"] for m in rows] == ["confidential probe"]
        assert probe


class TestSuspendAndResume:
    def test_suspended_cpq_listener_refuses_connections_until_resumed(
            self, running: Deployment) -> None:
        """The seed's story: no connection on 7025, System status Offline, resume fixes it."""
        cfg = running.manager_config
        port = running.ports["manager_cpq"]
        text = cli(cfg, "suspend").stdout
        assert "Receiving suspended for cpq_listener." in text
        assert "Mail delivery suspended." in text
        assert refused(port)
        assert "System status: Offline" in cli(cfg, "status").stdout
        check = subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c",
                                str(running.gateway_config), "pvo", "check"],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 1 and "Not ready" in check.stderr
        running.send(subject="confidential", body="waits on the gateway")
        resumed = cli(cfg, "resume").stdout
        assert "Receiving resumed for cpq_listener." in resumed
        assert "Mail delivery resumed." in resumed
        assert not refused(port)
        assert "System status: Online" in cli(cfg, "status").stdout
        assert cli(cfg, "resumelisteners").stdout.strip() == "No listeners were resumed."
        running.admin(running.gateway_config, "delivernow", {"host": "the.cpq.host"})
        assert wait_for("quarantined after resume", running.quarantined)

    def test_suspenddel_holds_delivery_and_resumedel_releases_it(
            self, running: Deployment) -> None:
        """With delivery suspended mail is received and queued, then delivered on resumedel."""
        cfg = running.gateway_config
        assert cli(cfg, "suspenddel").stdout.strip() == "Mail delivery suspended."
        sent = running.send(subject="hello", body="queued while suspended")
        wait_for("queued", lambda: cli(cfg, "showrecipients").stdout.count("hello") == 1)
        assert running.delivered() == []
        assert cli(cfg, "resumedel").stdout.strip() == "Mail delivery resumed."
        assert [relayed(c) for _, c in wait_for("delivered", running.delivered)] == [sent]

    def test_unknown_listener_is_named(self, running: Deployment) -> None:
        """Suspending a listener that does not exist lists the ones that do."""
        result = cli(running.gateway_config, "suspendlisteners", "nosuch")
        assert result.returncode == 1
        assert "Unknown listener: nosuch (listeners: IncomingMail, cpq_listener)" in result.stderr


class TestJsonForms:
    def test_tophosts_and_status_json(self, running: Deployment) -> None:
        """--json gives the same figures to scripts."""
        import json
        running.send(subject="hello", body="x")
        wait_for("delivered", running.delivered)
        top = json.loads(cli(running.gateway_config, "tophosts", "--json").stdout)
        assert top["hosts"][0]["host"] == "example.com"
        assert top["hosts"][0]["deliv_rcpts"] == 1
        status = json.loads(cli(running.gateway_config, "status", "--json").stdout)
        assert status["system_status"] == "Online"
        assert status["counters"]["delivered_recipients"][1] == 1


class TestLogCommands:
    def test_grep_finds_cpq_lines_and_says_when_nothing_matches(
            self, running: Deployment) -> None:
        """`grep -e "CPQ ICID" mail_logs` finds CPQ connections; no match says so."""
        running.send(subject="confidential", body="x")
        wait_for("quarantined", running.quarantined)
        out = cli(running.manager_config, "grep", "-e", "CPQ ICID", "mail_logs")
        assert out.returncode == 0
        assert all("New CPQ ICID" in line for line in out.stdout.splitlines())
        count = cli(running.gateway_config, "grep", "-c", "-e", "port 7025|port \\d+$")
        assert int(count.stdout) >= 1
        none = cli(running.gateway_config, "grep", "-e", "no such thing here")
        assert none.returncode == 1 and none.stdout.strip() == "No results were found"
        tail = cli(running.gateway_config, "tail", "-n", "3")
        assert len(tail.stdout.splitlines()) == 3
