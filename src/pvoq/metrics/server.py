"""Serve `/metrics` (Prometheus text format) on the port `<metrics>` gives.

One small FastAPI app per appliance, served by `web.server.ApiServer` on the
appliance's event loop (bound before `start()` returns, like the API). A scrape
renders the event metrics of this process (`pvoq.metrics`) and the appliance's
live collector (`metrics.live`) in a worker thread, so the event loop carries on
while the collectors read. Any other path is a 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from pvoq.metrics import EVENTS
from pvoq.web.server import ApiServer


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


def create_app(registry: CollectorRegistry) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/metrics")
    async def metrics() -> Response:
        data = await asyncio.to_thread(generate_latest, registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    return app


class MetricsServer:
    """`/metrics` of one appliance on *address*:*port*; `start()` after the bind."""

    def __init__(self, live: Collector, address: str, port: int) -> None:
        self.server = ApiServer(create_app(registry_of(live)), address, port)
        self.address, self.port = self.server.address, self.server.port

    def start(self) -> None:
        self.server.start()

    async def stop(self) -> None:
        await self.server.stop()
