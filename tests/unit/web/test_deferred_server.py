"""A `Deferred` application: bound at start, built on the first connection, served after."""

from __future__ import annotations

import asyncio
from typing import Any

from pvoq.web.server import Deferred, WebServer


def _app(text: bytes) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(text)).encode())]})
        await send({"type": "http.response.body", "body": text})
    return app


async def _get(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return body


def test_the_application_is_built_on_the_first_connection_only() -> None:
    builds: list[str] = []

    def build() -> Any:
        builds.append("built")
        return _app(b"hello")

    async def main() -> tuple[list[str], bytes, bytes, list[str]]:
        server = WebServer(Deferred(build, ("json",)), "127.0.0.1", 0)
        server.start()
        try:
            await asyncio.sleep(0.2)
            before = list(builds)
            first = await _get(server.port)   # waits in the backlog while it is built
            second = await _get(server.port)
            return before, first, second, list(builds)
        finally:
            await server.stop()

    before, first, second, after = asyncio.run(main())
    assert before == []
    assert first.startswith(b"HTTP/1.1 200") and first.endswith(b"hello")
    assert second.endswith(b"hello")
    assert after == ["built"]


def test_a_restart_before_any_connection_stays_deferred_and_serves_the_new_one() -> None:
    builds: list[bytes] = []

    def make(text: bytes) -> Deferred:
        return Deferred(lambda: builds.append(text) or _app(text))

    async def main() -> tuple[list[bytes], bytes, bool]:
        server = WebServer(make(b"old"), "127.0.0.1", 0)
        server.start()
        try:
            await server.restart(make(b"new"), "127.0.0.1", 0, None)
            await asyncio.sleep(0.1)
            built_early = list(builds)
            answer = await _get(server.port)
            return built_early, answer, server.built
        finally:
            await server.stop()

    built_early, answer, built = asyncio.run(main())
    assert built_early == []
    assert answer.endswith(b"new") and built
    assert builds == [b"new"]


def test_a_restart_once_built_builds_the_new_application_at_once() -> None:
    async def main() -> tuple[bytes, bytes]:
        server = WebServer(Deferred(lambda: _app(b"one")), "127.0.0.1", 0)
        server.start()
        try:
            first = await _get(server.port)
            await server.restart(Deferred(lambda: _app(b"two")), "127.0.0.1", 0, None)
            return first, await _get(server.port)
        finally:
            await server.stop()

    first, second = asyncio.run(main())
    assert first.endswith(b"one") and second.endswith(b"two")
