"""What `/metrics` reads from an appliance's live state at scrape time.

`ApplianceCollector` is a prometheus-client collector over one appliance's parts:
its delivery queues (depth, recipients, oldest message and host state per
destination, `the.cpq.host` / `the.cpq.release.host` always included), its
listeners (up or suspended) and the system's Online/Offline state, its counters
(the `status` counters since start) and what its role adds (`gateway_families`:
the work queue; `manager_families`: the quarantines from the store's maintained
counters, each gateway's SSH fault).

A scrape runs in a worker thread (`metrics.server`), never on the event loop: the
collector reads snapshots (`list(...)` of the live dicts, taken atomically under the
GIL) and one pass over the queued entries, so a gateway with a long backlog costs the
loop no pause; the quarantines are read from counters, never counted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pvoq import __version__
from pvoq.config.model import ROLE_GATEWAY, THE_CPQ_HOST, THE_CPQ_RELEASE_HOST, Config
from pvoq.counters import Counters
from pvoq.delivery.queue import DeliveryQueues
from pvoq.listeners import ListenerSet

__all__ = ["ApplianceCollector", "Metric", "gateway_families", "manager_families"]

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class ApplianceCollector(Collector):
    """The live metrics of one appliance; *extra* gives its role's own families."""

    def __init__(self, *, role: str, hostname: Callable[[], str], started: float,
                 config: Callable[[], Config], queues: DeliveryQueues,
                 listeners: ListenerSet, counters: Counters,
                 extra: Callable[[], Iterable[Metric]]) -> None:
        self.role = role
        self.hostname = hostname
        self.started = started
        self.config = config
        self.queues = queues
        self.listeners = listeners
        self.counters = counters
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("pvoq_info", "This appliance: role, hostname, version",
                                 labels=["role", "hostname", "version"])
        info.add_metric([self.role, self.hostname(), __version__], 1)
        yield info
        yield GaugeMetricFamily("pvoq_start_time_seconds", "When this process started (Unix "
                                "time)", value=self.started)
        yield from self._queues()
        yield from self._listeners()
        yield from self._counters()
        yield from self.extra()

    def _queues(self) -> Iterator[Metric]:
        messages: dict[str, int] = {}
        recipients: dict[str, int] = {}
        oldest: dict[str, float] = {}
        for entry in list(self.queues.entries.values()):
            seen: set[str] = set()
            for r in list(entry.recipients):
                host = r.host
                if not r.pending or not host:
                    continue
                recipients[host] = recipients.get(host, 0) + 1
                if host not in seen:
                    seen.add(host)
                    messages[host] = messages.get(host, 0) + 1
                    oldest[host] = min(oldest.get(host, entry.received), entry.received)
        hosts = dict(list(self.queues.hosts.items()))
        cpq = THE_CPQ_HOST if self.role == ROLE_GATEWAY else THE_CPQ_RELEASE_HOST
        names = sorted({cpq, *hosts, *messages})
        now = time.time()
        depth = GaugeMetricFamily("pvoq_queue_messages", "Messages waiting in the delivery "
                                  "queue of a destination", labels=["destination"])
        rcpts = GaugeMetricFamily("pvoq_queue_recipients", "Recipients waiting in the "
                                  "delivery queue of a destination (Active Recipients)",
                                  labels=["destination"])
        age = GaugeMetricFamily("pvoq_queue_oldest_seconds", "Age of the oldest message "
                                "waiting for a destination (0: none)", labels=["destination"])
        down = GaugeMetricFamily("pvoq_queue_host_down", "1 when a destination was down at "
                                 "its last delivery attempt", labels=["destination"])
        for name in names:
            depth.add_metric([name], messages.get(name, 0))
            rcpts.add_metric([name], recipients.get(name, 0))
            age.add_metric([name], max(0.0, now - oldest[name]) if name in oldest else 0.0)
            known = hosts.get(name)
            down.add_metric([name], 1 if known is not None and known.stats.down else 0)
        yield from (depth, rcpts, age, down)
        yield GaugeMetricFamily("pvoq_delivery_suspended", "1 when delivery is suspended "
                                "(suspenddel)", value=1 if self.queues.suspended else 0)

    def _listeners(self) -> Iterator[Metric]:
        bound = set(list(self.listeners.servers))
        suspended = set(list(self.listeners.suspended))
        up = GaugeMetricFamily("pvoq_listener_up", "1 when a listener accepts connections",
                               labels=["listener", "protocol"])
        paused = GaugeMetricFamily("pvoq_listener_suspended", "1 when a listener is "
                                   "suspended (suspendlisteners)", labels=["listener"])
        listeners = self.config().listeners
        for listener in listeners:
            up.add_metric([listener.name, str(listener.protocol)],
                          1 if listener.name in bound else 0)
            paused.add_metric([listener.name], 1 if listener.name in suspended else 0)
        yield from (up, paused)
        online = any(x.name not in suspended for x in listeners)
        yield GaugeMetricFamily("pvoq_system_online", "1 when the system is Online (receiving "
                                "is not suspended on every listener), 0 when Offline",
                                value=1 if online else 0)

    def _counters(self) -> Iterator[Metric]:
        for name, value in sorted(dict(self.counters.uptime).items()):
            if _NAME.fullmatch(name):
                yield CounterMetricFamily(f"pvoq_{name}", f"The status counter {name} since "
                                          "this process started", value=value)


def gateway_families(work_queue: int) -> Iterator[Metric]:
    """A gateway's own: the messages waiting to be scanned."""
    yield GaugeMetricFamily("pvoq_work_queue_messages", "Messages in the gateway's work "
                            "queue (waiting to be scanned, or for a retry)", value=work_queue)


class QuarantineCounts(Protocol):
    def held_count(self, quarantine: str | None = None) -> int: ...

    def used_bytes(self) -> int: ...


def manager_families(store: QuarantineCounts, quarantines: Iterable[str],
                     gateways: Iterable[str], fault: Callable[[str], str | None]
                     ) -> Iterator[Metric]:
    """A manager's own: the quarantines (maintained counters) and each gateway's SSH fault."""
    held = GaugeMetricFamily("pvoq_quarantine_messages", "Messages held in a quarantine",
                             labels=["quarantine"])
    for name in sorted(quarantines):
        held.add_metric([name], store.held_count(name))
    yield held
    yield GaugeMetricFamily("pvoq_quarantine_held_messages", "Messages held in any "
                            "quarantine (each counted once)", value=store.held_count())
    yield GaugeMetricFamily("pvoq_quarantine_bytes", "Bytes of the messages held (the space "
                            "quota counts these)", value=store.used_bytes())
    faults = GaugeMetricFamily("pvoq_ssh_lookup_fault", "1 while the last SSH lookup of a "
                               "gateway failed (an application fault)", labels=["gateway"])
    for name in sorted(gateways):
        faults.add_metric([name], 1 if fault(name) else 0)
    yield faults
