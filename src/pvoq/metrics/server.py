"""Serve `/metrics` (Prometheus text format) on the port `<metrics>` gives.

One small ASGI application per appliance (plain ASGI: one path does not need
FastAPI's import set, about 15 MB of an idle appliance), served by
`web.server.PlainServer` on the appliance's event loop (bound before `start()`
returns, like the API; no uvicorn for it). A scrape renders the event metrics of this process
(`pvoq.metrics`) and the appliance's live collector (`metrics.live`) in a worker
thread, so the event loop carries on while the collectors read. Any other path
is a 404, any other method on `/metrics` a 405.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from pvoq.metrics import EVENTS
from pvoq.web.server import PlainServer


class _Events(Collector):
    """This process's event metrics, as one collector of an appliance's registry."""

    def collect(self) -> Iterable[Metric]:
        return EVENTS.collect()


def registry_of(live: Collector) -> CollectorRegistry:
    """A registry of the event metrics and *live* (an appliance's collector)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Events())
    registry.register(live)
    return registry


Asgi = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                 Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


def create_app(registry: CollectorRegistry) -> Asgi:
    """The ASGI application: `GET /metrics` renders *registry*."""

    async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                  send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            status, body, kind = 404, b"Not Found\n", "text/plain; charset=utf-8"
        elif scope["method"] not in ("GET", "HEAD"):
            status, body, kind = 405, b"Method Not Allowed\n", "text/plain; charset=utf-8"
        else:
            status, kind = 200, CONTENT_TYPE_LATEST
            body = await asyncio.to_thread(generate_latest, registry)
        headers = [(b"content-type", kind.encode()),
                   (b"content-length", str(len(body)).encode())]
        if status == 405:
            headers.append((b"allow", b"GET, HEAD"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})

    return app


class MetricsServer:
    """`/metrics` of one appliance on *address*:*port*; `start()` after the bind."""

    def __init__(self, live: Collector, address: str, port: int) -> None:
        self.server = PlainServer(create_app(registry_of(live)), address, port)
        self.address, self.port = self.server.address, self.server.port

    def start(self) -> None:
        self.server.start()

    async def stop(self) -> None:
        await self.server.stop()
