"""The events an appliance counts for Prometheus: one call per event, from the part where
it happens.

This package's root owns the event metrics (counters and histograms, process-wide:
one appliance per process) and the one-line calls the parts make: a gateway's
verdicts (`verdict`), a CPQ transfer's latency (`cpq_transfer`), a TLS failure on
a delivery that requires TLS (`tls_failure`), an SSH lookup that failed
(`ssh_lookup_failed`), a commit of the spool log (`spool_commit`) or of the
quarantine store (`store_commit`), a scan (`scanned`). What can be read from the
live state at scrape time (queues, listeners, quarantines, counters) is not counted
here: `metrics.live` reads it then. `metrics.server` serves both on `/metrics`.

It imports nothing of pvoq but the configuration's constants: every part may call it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

from pvoq.config.model import THE_CPQ_HOST, THE_CPQ_RELEASE_HOST

disable_created_metrics()  # no `_created` series: the start time is pvoq_start_time_seconds
EVENTS = CollectorRegistry(auto_describe=True)
CPQ_DESTINATIONS = (THE_CPQ_HOST, THE_CPQ_RELEASE_HOST)

# Latency buckets from 1 ms to 60 s: a commit is milliseconds, a scan or a transfer
# may take seconds (a large message, a slow clamd, a far manager).
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 60.0)

MESSAGES = Counter(
    "pvoq_messages", "Messages the gateway's scan pipeline decided, by verdict "
    "(clean, quarantined, dropped, bounced)", ["verdict"], registry=EVENTS)
QUARANTINED = Counter(
    "pvoq_quarantined_messages", "Messages the gateway sent to a centralized quarantine, by "
    "quarantine (a message caught twice counts in both)", ["quarantine"], registry=EVENTS)
CPQ_TRANSFER = Histogram(
    "pvoq_cpq_transfer_seconds", "Time of one CPQ transaction (MAIL FROM to the reply to "
    "DATA), by destination (the.cpq.host, the.cpq.release.host)", ["destination"],
    buckets=_BUCKETS, registry=EVENTS)
TLS_FAILURES = Counter(
    "pvoq_tls_failures", "Deliveries that required TLS and could not negotiate it (no "
    "STARTTLS, handshake or certificate failure), by destination", ["destination"],
    registry=EVENTS)
SSH_LOOKUP_FAILURES = Counter(
    "pvoq_ssh_lookup_failures", "SSH lookups of a gateway's PVO listener that failed (an "
    "application fault), by gateway", ["gateway"], registry=EVENTS)
SPOOL_COMMIT = Histogram(
    "pvoq_spool_commit_seconds", "Time of one group commit of the spool log (write and "
    "fdatasync)", buckets=_BUCKETS, registry=EVENTS)
STORE_COMMIT = Histogram(
    "pvoq_store_commit_seconds", "Time of one group commit of arrivals into the quarantine "
    "store (bodies synced, rows committed)", buckets=_BUCKETS, registry=EVENTS)
SCAN = Histogram(
    "pvoq_scan_seconds", "Time of one message's scan in the scanner processes, queueing "
    "included", buckets=_BUCKETS, registry=EVENTS)


def now() -> float:
    """A start time for the timing calls below (monotonic)."""
    return time.monotonic()


def verdict(kind: str, quarantines: Iterable[str] = ()) -> None:
    """The pipeline decided *kind* (`clean`, `quarantined`, `drop`, `bounce`) for a message,
    caught by *quarantines*."""
    MESSAGES.labels(verdict=kind).inc()
    for name in quarantines:
        QUARANTINED.labels(quarantine=name).inc()


def cpq_transfer(destination: str, started: float) -> None:
    """A transaction to *destination* that began at *started* ended (CPQ destinations only)."""
    if destination in CPQ_DESTINATIONS:
        CPQ_TRANSFER.labels(destination=destination).observe(time.monotonic() - started)


def tls_failure(destination: str) -> None:
    TLS_FAILURES.labels(destination=destination).inc()


def ssh_lookup_failed(gateway: str) -> None:
    SSH_LOOKUP_FAILURES.labels(gateway=gateway).inc()


def spool_commit(started: float) -> None:
    SPOOL_COMMIT.observe(time.monotonic() - started)


def store_commit(started: float) -> None:
    STORE_COMMIT.observe(time.monotonic() - started)


def scanned(started: float) -> None:
    SCAN.observe(time.monotonic() - started)
