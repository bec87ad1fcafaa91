"""The console's and the API's listening socket (pvoq.web.server.bind): every accepted
connection has TCP_NODELAY, on the standard event loop as on uvloop.

Without it a response's body waited behind its headers for the client's delayed ACK
(40 ms) on every request of a kept-alive connection after the first."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from pvoq.web.server import bind


async def _accepted_nodelay() -> int:
    sock = bind("127.0.0.1", 0)
    seen: list[int] = []

    class Recorder(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            seen.append(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await asyncio.get_running_loop().create_server(Recorder, sock=sock)
    try:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
    finally:
        server.close()
    assert seen, "no connection accepted"
    return seen[0]


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
def test_accepted_connections_have_tcp_nodelay(
        run: Callable[[Coroutine[Any, Any, int]], int]) -> None:
    assert run(_accepted_nodelay()) != 0
