"""Nothing is lost when a process stops: queued mail waits and is retried."""

from __future__ import annotations

import signal
from email import message_from_bytes

from pvoq.testing.localdeploy import Deployment, wait_for
from pvoq.testing.trace import relayed


def _gateway_status(dep: Deployment) -> dict:
    return dep.admin(dep.gateway_config, "status")["data"]


def _host(dep: Deployment, config, name: str) -> dict | None:
    hosts = dep.admin(config, "tophosts")["data"]["hosts"]
    return next((h for h in hosts if h["host"] == name), None)


class TestRestart:
    def test_gateway_killed_with_mail_in_the_cpq_host_loses_none(
            self, deployment: Deployment) -> None:
        """Mail queued for a down manager survives SIGKILL of the gateway, and arrives once."""
        dep = deployment
        dep.start_sink()
        dep.start_gateway()
        sent = [dep.send(subject=f"confidential {i}", body=f"message {i}") for i in range(5)]
        wait_for("five messages in the.cpq.host",
                 lambda: _gateway_status(dep)["messages_in_cpq_host"] == 5)
        host = _host(dep, dep.gateway_config, "the.cpq.host")
        assert host is not None and host["down"] and host["active_rcpts"] == 5

        dep.stop("gateway", sig=signal.SIGKILL)
        dep.start_gateway()
        assert _gateway_status(dep)["messages_in_cpq_host"] == 5
        dep.start_manager()
        rows = wait_for("five quarantined", lambda: (r := dep.quarantined()) and
                        len(r) >= 5 and r, timeout_s=60)
        wait_for("an empty the.cpq.host",
                 lambda: _gateway_status(dep)["messages_in_cpq_host"] == 0)
        assert len(dep.quarantined()) == 5
        assert sorted(m["subject"] for m in rows) == sorted(
            str(message_from_bytes(s)["Subject"]) for s in sent)
        assert len({m["origin_mid"] for m in rows}) == 5

    def test_release_waits_in_the_release_host_while_the_gateway_is_down(
            self, running: Deployment) -> None:
        """A release to a stopped gateway stays queued on the manager and is delivered later."""
        dep = running
        sent = dep.send(subject="confidential", body="release me later")
        record = wait_for("quarantined", dep.quarantined)[0]
        dep.stop("gateway")
        dep.admin(dep.manager_config, "quarantine.release", {"mid": record["id"]})
        wait_for("the release host marked down", lambda: (
            h := _host(dep, dep.manager_config, "the.cpq.release.host")) and h["down"])
        assert dep.delivered() == []
        dep.stop("manager", sig=signal.SIGKILL)
        dep.start_manager()
        dep.start_gateway()
        delivered = wait_for("the release at the sink", dep.delivered, timeout_s=60)
        assert [relayed(c) for _, c in delivered] == [sent]

    def test_downstream_down_then_up(self, running: Deployment) -> None:
        """Clean mail for a down downstream host is retried until it is accepted."""
        dep = running
        dep.stop("sink")
        sent = dep.send(subject="hello", body="clean")
        wait_for("example.com marked down", lambda: (
            h := _host(dep, dep.gateway_config, "example.com")) and h["down"])
        dep.start_sink()
        delivered = wait_for("delivery after the sink returns", dep.delivered, timeout_s=60)
        assert [relayed(c) for _, c in delivered] == [sent]
