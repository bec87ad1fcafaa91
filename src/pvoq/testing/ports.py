"""Free ports for the tests, the demo and the benchmarks' listeners.

A listening port is picked below the kernel's ephemeral range: one chosen
inside it can be taken, before its process binds it, as the source port of
an outgoing connection (a connection to 127.0.0.1 on a port nobody listens
on can even connect to itself through it and hold the port).

When the tests run in parallel (pytest-xdist: `PYTEST_XDIST_WORKER=gwN`,
`PYTEST_XDIST_WORKER_COUNT`), each worker picks from its own slice of that
range, so two workers never hand out the same port between the probe and the
bind of the process they start; and one process never hands out a port twice
until it has used most of its slice.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_FIRST = 10_000
_handed: set[int] = set()


def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections (Linux), else 32768."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_range() -> range:
    """The ports this process picks from: below the ephemeral range, this worker's slice."""
    low = max(_FIRST + 1, _ephemeral_low())
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get(
        "PYTEST_XDIST_WORKER_COUNT", "")
    if worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 1:
        index, n = int(worker[2:]), int(count)
        width = (low - _FIRST) // n
        if width >= 100 and index < n:
            start = _FIRST + index * width
            return range(start, start + width)
    return range(_FIRST, low)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on *host* now, from `port_range()`, not handed out before by this process."""
    ports = port_range()
    if len(_handed) > len(ports) // 2:
        _handed.clear()
    for _ in range(200):
        port = random.choice(ports)
        if port in _handed:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
