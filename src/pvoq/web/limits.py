"""Request bodies: bounded, and read only from authenticated clients (an ASGI middleware).

In front of the API application, before any route reads a byte of a body:

- a request that carries a body (`Content-Length` above 0, or any
  `Transfer-Encoding`) without a known bearer token is answered 401 at once;
  its body is never read;
- a declared `Content-Length` over the limit is answered 413 at once, one
  that is not a number 400;
- a body sent without a length (chunked) is counted as it is read, and
  refused with 413 as soon as it passes the limit.

Requests without a body pass untouched: the routes authenticate them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(HTTPException):
    """A body that passed the limit while it was read (answered 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


async def read_bounded(app: App, scope: Scope, receive: Receive, send: Send, limit: int,
                       too_large: Callable[[BodyTooLarge], Awaitable[None]]) -> None:
    """Run *app* with its body counted as it is read: past *limit* bytes, *too_large*
    answers instead (unless the response has started: then the error goes up)."""
    seen = 0
    started = False

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    async def tracked(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, counted, tracked)
    except BodyTooLarge as exc:
        if started:
            raise
        await too_large(exc)


class BodyLimit:
    """The ASGI middleware: *authorized* tells a known `Authorization` header value."""

    def __init__(self, app: App, *, authorized: Callable[[str], bool],
                 limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.authorized = authorized
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", ())}
        length = headers.get("content-length")
        chunked = "transfer-encoding" in headers
        if length is None and not chunked:
            await self.app(scope, receive, send)
            return
        if length is not None and not length.strip().isdigit():
            await _answer(send, 400, "Content-Length is not a number")
            return
        declared = int(length) if length is not None else None
        if (declared or chunked) and not self.authorized(headers.get("authorization", "")):
            await _answer(send, 401, "missing or unknown bearer token",
                          [(b"www-authenticate", b"Bearer")])
            return
        if declared is not None and declared > self.limit:
            await _answer(send, 413, f"request body larger than {self.limit} bytes")
            return
        await read_bounded(self.app, scope, receive, send, self.limit,
                           lambda exc: _answer(send, 413, str(exc.detail)))


async def _answer(send: Send, status: int, message: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON error answer (`{"detail": ...}`, as FastAPI's own), closing the connection."""
    body = json.dumps({"detail": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
