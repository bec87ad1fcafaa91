"""What every response of the console's server carries, and what every request may be.

- Headers: the Content-Security-Policy (`CSP`: no inline script or style, nothing
  from elsewhere), `X-Content-Type-Options: nosniff`, `Referrer-Policy:
  no-referrer`, `X-Frame-Options: DENY`, and `Cache-Control: no-store` on
  everything but `/static/`.
- Bodies: a request body larger than `max_body_bytes` is refused with 413,
  whether `Content-Length` says so or the body only turns out so.
- The REST API (`/api/...`, `/sma/api/...`) is handed to its own application,
  which keeps its own authentication, limits and error shapes.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pvoq.web.limits import read_bounded

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()),
           (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"no-referrer"),
           (b"x-frame-options", b"DENY")]
API_PREFIXES = ("/api/", "/sma/api/")


class SafetyMiddleware:
    """Security headers on every response; bounded request bodies; the API dispatched."""

    def __init__(self, app: ASGIApp, *, api: ASGIApp | None = None,
                 max_body_bytes: int = 1024 * 1024) -> None:
        self.app, self.api, self.limit = app, api, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        static = path.startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = [v for k, v in message.get("headers", [])
                       if k.lower() == b"content-security-policy"]  # a framed document's
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in {h for h, _ in HEADERS}
                           and k.lower() != b"cache-control"]
                headers += HEADERS if not own else [
                    (b"content-security-policy", own[0]), *HEADERS[1:3],
                    (b"x-frame-options", b"SAMEORIGIN")]
                headers.append((b"cache-control",
                                b"no-cache" if static else b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        if self.api is not None and path.startswith(API_PREFIXES):
            await self.api(scope, receive, with_headers)   # the API bounds its own bodies
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            status = 400 if not length.isdigit() else 413
            await _plain(with_headers, status, "Content-Length is not a number" if status == 400
                         else f"Request body larger than {self.limit} bytes")
            return
        await read_bounded(self.app, scope, receive, with_headers, self.limit, lambda _: _plain(
            with_headers, 413, f"Request body larger than {self.limit} bytes"))


def _header(scope: MutableMapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1").strip())
    return None


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
