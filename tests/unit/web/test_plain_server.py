"""`PlainServer`: a small ASGI application (`/metrics`) served without uvicorn, on real
sockets: one bodiless request per connection, answered whole; a malformed, oversized or
silent request gets a 400 or the connection closed, and the server goes on serving."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pvoq.web import server as web_server
from pvoq.web.server import MAX_REQUEST_HEAD, PlainServer


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = f"{scope['method']} {scope['path']} {scope['query_string'].decode()}\n".encode()
    status = 200 if scope["path"] == "/metrics" else 404
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body",
                "body": b"" if scope["method"] == "HEAD" else body})


async def _ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def _serve(*requests: bytes) -> list[bytes]:
    async def main() -> list[bytes]:
        server = PlainServer(_app, "127.0.0.1", 0)
        server.start()
        try:
            return [await _ask(server.port, r) for r in requests]
        finally:
            await server.stop()
    return asyncio.run(main())


def test_a_get_a_head_and_an_unknown_path_are_answered_and_closed() -> None:
    get, head, missing = _serve(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
                                b"HEAD /metrics HTTP/1.0\r\n\r\n",
                                b"GET /other HTTP/1.1\r\n\r\n")
    assert get.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nconnection: close\r\n" in get and get.endswith(b"\r\n\r\nGET /metrics x=1\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    assert b"content-length: 15\r\n" in head
    assert missing.startswith(b"HTTP/1.1 404 Not Found\r\n")


def test_bad_requests_get_a_400_or_a_closed_connection_and_serving_goes_on() -> None:
    garbage, no_version, oversized, after = _serve(
        b"hello\r\n\r\n", b"GET /metrics\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (2 * MAX_REQUEST_HEAD) + b"\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert no_version.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert oversized == b""
    assert after.startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_client_that_never_ends_its_request_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_server, "REQUEST_TIMEOUT_S", 0.3)
    (silent,) = _serve(b"GET /metrics HTTP/1.1\r\n")
    assert silent == b""
