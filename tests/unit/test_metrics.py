"""The metrics: event calls, the live collector over real delivery queues, the manager's
quarantine metrics from maintained counters only, and `<metrics>` in the configuration."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from pvoq import metrics
from pvoq.config.errors import ConfigError
from pvoq.config.loader import load_config
from pvoq.config.model import THE_CPQ_HOST, THE_CPQ_RELEASE_HOST, Config
from pvoq.config.template import ApplianceSpec
from pvoq.counters import Counters
from pvoq.delivery.queue import DeliveryQueues
from pvoq.deploy import init_appliance
from pvoq.listeners import ListenerSet
from pvoq.maillog import MailLog
from pvoq.metrics.live import ApplianceCollector, Metric, manager_families
from pvoq.metrics.server import registry_of
from pvoq.spool.store import DELIVERED, Entry, Recipient, Spool


def event(name: str, **labels: str) -> float:
    return metrics.EVENTS.get_sample_value(name, labels) or 0.0


class TestEvents:
    def test_a_verdict_counts_the_message_and_each_quarantine(self) -> None:
        before = (event("pvoq_messages_total", verdict="quarantined"),
                  event("pvoq_quarantined_messages_total", quarantine="Virus"),
                  event("pvoq_quarantined_messages_total", quarantine="Outbreak"))
        metrics.verdict("quarantined", ["Virus", "Outbreak"])
        assert (event("pvoq_messages_total", verdict="quarantined"),
                event("pvoq_quarantined_messages_total", quarantine="Virus"),
                event("pvoq_quarantined_messages_total", quarantine="Outbreak")) == tuple(
                    n + 1 for n in before)

    def test_only_cpq_destinations_are_cpq_transfers(self) -> None:
        before = event("pvoq_cpq_transfer_seconds_count", destination=THE_CPQ_RELEASE_HOST)
        metrics.cpq_transfer(THE_CPQ_RELEASE_HOST, metrics.now() - 0.2)
        metrics.cpq_transfer("example.com", metrics.now())
        assert event("pvoq_cpq_transfer_seconds_count",
                     destination=THE_CPQ_RELEASE_HOST) == before + 1
        assert event("pvoq_cpq_transfer_seconds_sum", destination=THE_CPQ_RELEASE_HOST) >= 0.2
        assert event("pvoq_cpq_transfer_seconds_count", destination="example.com") == 0


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(init_appliance(tmp_path / "gw", ApplianceSpec(
        role="gateway", hostname="gw.test", serial="SN", metrics_port=9999),
        ca_dir=tmp_path / "ca"))


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[Any]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_the_live_collector_reads_queues_listeners_and_counters(config: Config,
                                                                 tmp_path: Path) -> None:
    log = MailLog(tmp_path / "logs", appliance="gateway gw.test", serial="SN")
    spool = Spool(tmp_path / "spool")
    queues = DeliveryQueues(spool=spool, maillog=log, destination_for=lambda h: None,  # type: ignore[arg-type,return-value]
                            retry_min_s=1, retry_max_s=2)
    now = time.time()
    queues.add(Entry(1, "a@x", [Recipient(1, "b@example.com", host="example.com"),
                                Recipient(2, "c@example.com", host="example.com")],
                     received=now - 100, size=10))
    queues.add(Entry(2, "a@x", [Recipient(1, "d@example.com", host="example.com"),
                                Recipient(2, "e@other.example", host="other.example",
                                          status=DELIVERED)], received=now - 5, size=10))
    queues.hosts["example.com"].stats.down = True
    listeners = ListenerSet(lambda: config, log, lambda listener, gate: None)  # type: ignore[arg-type,return-value]
    listeners.servers["cpq_listener"] = cast(Any, object())
    listeners.suspended.add("IncomingMail")
    counters = Counters()
    counters.inc("messages_received", 3)
    collector = ApplianceCollector(role="gateway", hostname=lambda: "gw.test", started=now,
                                   config=lambda: config, queues=queues, listeners=listeners,
                                   counters=counters, extra=lambda: ())
    found = samples(registry_of(collector))

    def value(name: str, **labels: str) -> float:
        return found[(name, frozenset(labels.items()))]

    assert value("pvoq_queue_messages", destination="example.com") == 2
    assert value("pvoq_queue_recipients", destination="example.com") == 3
    assert value("pvoq_queue_oldest_seconds", destination="example.com") >= 100
    assert value("pvoq_queue_host_down", destination="example.com") == 1
    assert value("pvoq_queue_messages", destination=THE_CPQ_HOST) == 0  # always there
    assert value("pvoq_queue_oldest_seconds", destination=THE_CPQ_HOST) == 0
    assert ("pvoq_queue_messages", frozenset({("destination", "other.example")})) not in found
    assert value("pvoq_listener_up", listener="cpq_listener", protocol="CPQ") == 1
    assert value("pvoq_listener_up", listener="IncomingMail", protocol="SMTP") == 0
    assert value("pvoq_listener_suspended", listener="IncomingMail") == 1
    assert value("pvoq_system_online") == 1  # the cpq_listener still receives
    assert value("pvoq_messages_received_total") == 3
    assert value("pvoq_start_time_seconds") == now
    listeners.suspended.add("cpq_listener")
    assert samples(registry_of(collector))[("pvoq_system_online", frozenset())] == 0
    spool.close()
    log.close()


class Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


class CountersOnly:
    """A quarantine store that has its maintained counters and nothing else: a collector
    that counted rows (COUNT(*), a search) would fail here."""

    def __init__(self) -> None:
        self.asked: list[str | None] = []

    def held_count(self, quarantine: str | None = None) -> int:
        self.asked.append(quarantine)
        return {"Policy": 1_000_000, None: 1_000_000}.get(quarantine, 0)

    def used_bytes(self) -> int:
        return 5 * 2**30


def test_manager_metrics_come_from_maintained_counters() -> None:
    store = CountersOnly()
    families = list(manager_families(store, ["Virus", "Policy"], ["gw1", "gw2"],
                                     lambda name: "fault" if name == "gw2" else None))
    found = samples(registry_of(Families(families)))
    assert found[("pvoq_quarantine_messages", frozenset({("quarantine", "Policy")}))] == 1e6
    assert found[("pvoq_quarantine_messages", frozenset({("quarantine", "Virus")}))] == 0
    assert found[("pvoq_quarantine_held_messages", frozenset())] == 1e6
    assert found[("pvoq_quarantine_bytes", frozenset())] == 5 * 2**30
    assert found[("pvoq_ssh_lookup_fault", frozenset({("gateway", "gw2")}))] == 1
    assert found[("pvoq_ssh_lookup_fault", frozenset({("gateway", "gw1")}))] == 0
    assert sorted(store.asked, key=str) == sorted(["Policy", "Virus", None], key=str)


class TestConfiguration:
    def test_off_unless_written(self, tmp_path: Path) -> None:
        cfg = load_config(init_appliance(tmp_path / "m", ApplianceSpec(
            role="manager", hostname="m.test", serial="SN"), ca_dir=tmp_path / "ca"))
        assert not cfg.metrics.enabled

    def test_init_writes_it_on(self, config: Config) -> None:
        assert (config.metrics.enabled, config.metrics.address, config.metrics.port) == (
            True, "127.0.0.1", 9999)

    @pytest.mark.parametrize(("section", "field", "message"), [
        ("<metrics><address>127.0.0.1</address></metrics>", "config.metrics.port", "missing"),
        ("<metrics><port>70000</port></metrics>", "config.metrics.port", "70000"),
        ("<metrics><port>9100</port><address>nowhere</address></metrics>",
         "config.metrics.address", "nowhere"),
    ])
    def test_bad_values_name_the_field(self, config: Config, section: str, field: str,
                                       message: str) -> None:
        text = config.path.read_text()
        start, end = text.index("  <metrics>"), text.index("</metrics>") + len("</metrics>")
        config.path.write_text(text[:start] + "  " + section + text[end:])
        with pytest.raises(ConfigError) as error:
            load_config(config.path)
        assert error.value.field == field and message in str(error.value), str(error.value)
