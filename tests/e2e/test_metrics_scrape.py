"""`/metrics` of a live gateway and a live manager, scraped over HTTP after mail has flowed
and parsed with prometheus-client's own parser: every value asserted is what happened.

Real processes (manager, gateway, sink), real CPQ over mutual TLS, real sockets.
"""

from __future__ import annotations

import smtplib
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pvoq.config.model import THE_CPQ_HOST, THE_CPQ_RELEASE_HOST
from pvoq.testing.localdeploy import GATEWAY, MANAGER, Deployment, free_port, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def flowed(tmp_path: Path) -> Iterator[Deployment]:
    """A deployment with metrics on, after one clean and one quarantined message."""
    dep = Deployment(tmp_path / "d", retry_min_s=0.5, retry_max_s=1.0, metrics=True)
    dep.init()
    try:
        dep.start()
        dep.send(subject="Lunch on Friday?", body="clean")
        dep.send(subject="confidential numbers", body="caught by the content filter")
        wait_for("the clean message delivered", lambda: len(dep.delivered()) == 1)
        wait_for("the other one quarantined", lambda: len(dep.quarantined()) == 1)
        wait_for("the.cpq.host empty", lambda: dep.admin(
            dep.gateway_config, "status")["data"]["messages_in_cpq_host"] == 0)
        yield dep
    finally:
        dep.stop_all()


def test_a_gateway_and_a_manager_say_what_flowed(flowed: Deployment) -> None:
    gw = scrape(flowed.ports["gateway_metrics"])
    assert value(gw, "pvoq_info", role="gateway", hostname=GATEWAY,
                 version=_version()) == 1
    assert value(gw, "pvoq_messages_total", verdict="clean") == 1
    assert value(gw, "pvoq_messages_total", verdict="quarantined") == 1
    assert value(gw, "pvoq_quarantined_messages_total", quarantine="Policy") == 1
    assert value(gw, "pvoq_messages_received_total") == 2
    assert value(gw, "pvoq_scan_seconds_count") == 2
    assert value(gw, "pvoq_cpq_transfer_seconds_count", destination=THE_CPQ_HOST) == 1
    assert value(gw, "pvoq_cpq_transfer_seconds_sum", destination=THE_CPQ_HOST) > 0
    assert value(gw, "pvoq_spool_commit_seconds_count") >= 2
    for destination in (THE_CPQ_HOST, "example.com"):
        assert value(gw, "pvoq_queue_messages", destination=destination) == 0
        assert value(gw, "pvoq_queue_oldest_seconds", destination=destination) == 0
        assert value(gw, "pvoq_queue_host_down", destination=destination) == 0
    assert value(gw, "pvoq_work_queue_messages") == 0
    assert value(gw, "pvoq_listener_up", listener="cpq_listener", protocol="CPQ") == 1
    assert value(gw, "pvoq_listener_suspended", listener="cpq_listener") == 0
    assert value(gw, "pvoq_system_online") == 1
    assert value(gw, "pvoq_delivery_suspended") == 0
    assert not any(name == "pvoq_tls_failures_total" for name, _ in gw)

    mgr = scrape(flowed.ports["manager_metrics"])
    assert value(mgr, "pvoq_info", role="manager", hostname=MANAGER, version=_version()) == 1
    assert value(mgr, "pvoq_quarantine_messages", quarantine="Policy") == 1
    assert value(mgr, "pvoq_quarantine_messages", quarantine="Virus") == 0
    assert value(mgr, "pvoq_quarantine_held_messages") == 1
    assert value(mgr, "pvoq_quarantine_bytes") > 0
    assert value(mgr, "pvoq_store_commit_seconds_count") >= 1
    assert value(mgr, "pvoq_queue_messages", destination=THE_CPQ_RELEASE_HOST) == 0
    assert value(mgr, "pvoq_ssh_lookup_fault", gateway=GATEWAY) == 0
    assert value(mgr, "pvoq_messages_received_total") == 1
    assert value(mgr, "pvoq_system_online") == 1
    # anything but /metrics is not served
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{flowed.ports['manager_metrics']}/", timeout=10)
    assert refused.value.code == 404


def test_a_reload_moves_metrics_to_a_new_port(flowed: Deployment) -> None:
    old = flowed.ports["manager_metrics"]
    new = free_port("127.0.0.1")
    config = flowed.manager_config
    config.write_text(config.read_text().replace(f"<port>{old}</port>", f"<port>{new}</port>"))
    flowed.admin(config, "reload")
    assert value(scrape(new), "pvoq_quarantine_messages", quarantine="Policy") == 1
    with pytest.raises(OSError):
        scrape(old)


def test_suspended_listeners_a_stuck_cpq_host_and_tls_failures(flowed: Deployment) -> None:
    """The gateway's listeners suspended: Offline; the manager replaced by a plain SMTP
    server that offers no STARTTLS: a message waits in the.cpq.host, TLS failures count."""
    port = flowed.ports["gateway_metrics"]
    flowed.stop("manager")
    flowed._spawn("fake", ["sink", "--listen", f"127.0.0.1:{flowed.ports['manager_cpq']}",
                           "--dir", str(flowed.root / "fake")])
    wait_for("the plain SMTP server", lambda: flowed._port_open(flowed.ports["manager_cpq"]))
    flowed.send(subject="confidential again", body="waits for a manager")
    stuck = wait_for("a TLS failure counted", lambda: (lambda s: s if s.get(
        ("pvoq_tls_failures_total", frozenset({("destination", THE_CPQ_HOST)})), 0) >= 1
        else None)(scrape(port)))
    assert value(stuck, "pvoq_queue_messages", destination=THE_CPQ_HOST) == 1
    assert value(stuck, "pvoq_queue_recipients", destination=THE_CPQ_HOST) == 1
    assert value(stuck, "pvoq_queue_oldest_seconds", destination=THE_CPQ_HOST) > 0
    assert value(stuck, "pvoq_queue_host_down", destination=THE_CPQ_HOST) == 1

    flowed.admin(flowed.gateway_config, "suspendlisteners", {"listener": "all"})
    offline = scrape(port)
    assert value(offline, "pvoq_system_online") == 0
    assert value(offline, "pvoq_listener_up", listener="cpq_listener", protocol="CPQ") == 0
    assert value(offline, "pvoq_listener_suspended", listener="cpq_listener") == 1
    with pytest.raises(OSError):  # and it is really closed
        smtplib.SMTP("127.0.0.1", flowed.ports["gateway_smtp"], timeout=5)


def _version() -> str:
    from pvoq import __version__
    return __version__


def test_a_metrics_port_in_use_does_not_stop_the_appliance(tmp_path: Path) -> None:
    """The port taken: the manager starts anyway and says so; a reload binds it once free."""
    dep = Deployment(tmp_path / "d", metrics=True)
    dep.init()
    port = dep.ports["manager_metrics"]
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen(1)
    try:
        dep.start_manager()
        ready = [line for line in (dep.root / "manager.out").read_text().splitlines()
                 if " ready " in line]
        assert len(ready) == 1
        assert f"; metrics cannot bind 127.0.0.1:{port}: Address already in use; " in ready[0]
        assert any(f"Critical: Metrics cannot bind 127.0.0.1:{port}" in line
                   for line in dep.mail_logs("manager"))
        squatter.close()
        dep.admin(dep.manager_config, "reload")
        assert value(scrape(port), "pvoq_quarantine_held_messages") == 0
    finally:
        squatter.close()
        dep.stop_all()
