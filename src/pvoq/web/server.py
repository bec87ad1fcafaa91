"""Serve an ASGI application with uvicorn inside the appliance's event loop, over TLS or not.

The listening socket is bound before `start()` returns, so a client that
connects right after start waits in the backlog instead of being refused.
`WebServer.restart()` takes a new application, TLS context or address in
place (a reload): on the same address the new server starts on the same
listening socket before the old one stops, so no connection is refused; on
a new address the new socket is bound first, and if that fails the old
server runs on. `web_tls_context()` builds the TLS context from `<web>`,
naming the field a bad certificate or key comes from.

An application given as `Deferred(build, modules)` is built on the first
connection, not at start: the socket is bound and listening at once (a first
client waits in the backlog), *modules* are imported in a thread and *build*
then runs on the event loop. An appliance whose console nobody opens never
loads FastAPI, Starlette, Jinja2 or uvicorn.

`PlainServer` serves a small ASGI application (`/metrics`) without uvicorn:
one bodiless request per connection, answered whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pvoq.config.errors import ConfigError
from pvoq.config.web import WebSettings

if TYPE_CHECKING:
    import uvicorn


def bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
    # and an accepted socket takes its protocol number from this one. Without it, a
    # response's body waited behind its headers for the client's delayed ACK (40 ms) on
    # every request of a kept-alive connection after the first.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def web_tls_context(web: WebSettings) -> ssl.SSLContext | None:
    """The server TLS context of *web* (None for plain HTTP); `ConfigError` naming
    `config.web.certificate` or `config.web.private_key` when they do not make one."""
    if web.plain_http:
        return None
    if web.certificate is None or web.private_key is None:
        raise ConfigError("HTTPS needs <certificate> and <private_key>",
                          field="config.web.certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(str(web.certificate), str(web.private_key))
    except ssl.SSLError as exc:
        field = ("config.web.private_key" if "KEY" in str(exc).upper()
                 else "config.web.certificate")
        raise ConfigError(f"certificate {web.certificate} and key {web.private_key} do not "
                          f"make a TLS server: {exc.reason or exc}", field=field) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}",
                          field="config.web.certificate") from None
    return context


@functools.cache
def _server_class() -> type[uvicorn.Server]:
    import uvicorn  # here: only an appliance that serves a page loads it

    class _Server(uvicorn.Server):
        """uvicorn without its own signal handling: the appliance owns SIGTERM and SIGHUP."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        def install_signal_handlers(self) -> None:
            return None

    return _Server


def _uvicorn(app: Any, tls: ssl.SSLContext | None) -> uvicorn.Server:
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                            timeout_graceful_shutdown=2, server_header=False)
    config.load()
    config.ssl = tls   # our context: built (and checked) before the server is
    return _server_class()(config)


class Deferred:
    """An application built on its server's first connection: *modules* imported in a
    thread (the event loop serves mail meanwhile), then *build()* on the loop."""

    def __init__(self, build: Callable[[], Any], modules: tuple[str, ...] = ()) -> None:
        self.build, self.modules = build, modules

    async def make(self) -> Any:
        await asyncio.to_thread(lambda: [importlib.import_module(m) for m in self.modules])
        return self.build()


class _Running:
    """One uvicorn server on a duplicate of the listening socket."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self.socket = sock.dup()
        self.server = server
        self.task = asyncio.ensure_future(self.server.serve(sockets=[self.socket]))

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self.task, 5)
        self.socket.close()


class WebServer:
    """An ASGI application served on *address*:*port* (TLS when *tls*), restartable in place;
    *app* may be `Deferred` (built on the first connection)."""

    def __init__(self, app: Any, address: str, port: int,
                 tls: ssl.SSLContext | None = None) -> None:
        self.app, self.tls = app, tls
        self.socket = bind(address, port)
        self.address, self.port = self.socket.getsockname()[:2]
        self.configured = (address, port)
        self.server: uvicorn.Server | None = (None if isinstance(app, Deferred)
                                              else _uvicorn(app, tls))
        self._running: _Running | None = None
        self._watched: socket.socket | None = None  # waiting for a first connection
        self._building: asyncio.Task[None] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def url(self) -> str:
        """Where it listens, as a URL (an IPv6 address in brackets)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}/"

    @property
    def built(self) -> bool:
        """Whether the application is built and served (a `Deferred` one: once a client
        has connected)."""
        return self._running is not None

    def start(self) -> None:
        if self.server is None:
            self._watch()
        else:
            self._running = _Running(self.server, self.socket)

    def _watch(self) -> None:
        self._watched = self.socket
        asyncio.get_running_loop().add_reader(self.socket.fileno(), self._first_connection)

    def _unwatch(self) -> None:
        if self._watched is not None:
            asyncio.get_running_loop().remove_reader(self._watched.fileno())
            self._watched = None
        if self._building is not None:
            self._building.cancel()
            self._building = None

    def _first_connection(self) -> None:
        """A client waits in the backlog: build the application, then serve it."""
        self._unwatch()
        self._building = asyncio.ensure_future(self._build())

    async def _build(self) -> None:
        assert isinstance(self.app, Deferred)
        app = await self.app.make()
        self._building = None
        self.server = _uvicorn(app, self.tls)
        self._running = _Running(self.server, self.socket)

    async def restart(self, app: Any, address: str, port: int,
                      tls: ssl.SSLContext | None) -> None:
        """Serve *app* with *tls* on *address*:*port* from now on (see module doc); an
        `OSError` binding a new address leaves the old server running. A `Deferred` *app*
        stays deferred while no client has connected yet."""
        old_socket = self.socket
        if (address, port) != self.configured:
            self.socket = bind(address, port)   # raises: the old server runs on
            self.address, self.port = self.socket.getsockname()[:2]
            self.configured = (address, port)
        old = self._running
        self.app, self.tls = app, tls
        if old is None and isinstance(app, Deferred):
            self._unwatch()
            self._watch()
        else:
            self.server = _uvicorn(await app.make() if isinstance(app, Deferred) else app, tls)
            self._unwatch()
            self._running = _Running(self.server, self.socket)
        if old is not None:
            await old.stop()
        if old_socket is not self.socket:
            old_socket.close()

    async def stop(self) -> None:
        self._unwatch()
        if self._running is not None:
            await self._running.stop()
        self.socket.close()


class ApiServer(WebServer):
    """The REST API on `<api>`'s address and port, plain HTTP (as it has always been)."""

    def __init__(self, app: Any, address: str, port: int) -> None:
        super().__init__(app, address, port, None)


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error"}
MAX_REQUEST_HEAD = 8192      # octets of request line and headers a `PlainServer` reads
REQUEST_TIMEOUT_S = 10.0     # to send them


class PlainServer:
    """A small ASGI application served without uvicorn: one `GET`/`HEAD` per connection,
    no request body, the response written whole and the connection closed (`/metrics`:
    a scraper needs no more, and an idle appliance does not load uvicorn for it).

    Bound on construction like `WebServer` (a client connecting before `start()` waits
    in the backlog). A request line or headers over `MAX_REQUEST_HEAD` octets, not sent
    within `REQUEST_TIMEOUT_S`, or not HTTP/1.x gets a 400 (or the connection closed).
    """

    def __init__(self, app: Any, address: str, port: int) -> None:
        self.app = app
        self.socket = bind(address, port)
        self.address, self.port = self.socket.getsockname()[:2]
        self._server: asyncio.Server | None = None
        self._starting: asyncio.Task[asyncio.Server] | None = None
        self._clients: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._starting = asyncio.ensure_future(asyncio.start_server(
            self._client, sock=self.socket, limit=MAX_REQUEST_HEAD))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            pass
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), REQUEST_TIMEOUT_S)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
        words = head.split(b"\r\n", 1)[0].split(b" ")
        if len(words) != 3 or not words[2].startswith(b"HTTP/1.") or not words[1].startswith(b"/"):
            await self._write(writer, 400, [(b"content-type", b"text/plain; charset=utf-8")],
                              b"Bad Request\n")
            return
        method = words[0].decode("latin-1")
        path, _, query = words[1].partition(b"?")
        scope: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path.decode("latin-1"),
                 "raw_path": path, "query_string": query, "headers": [],
                 "server": (self.address, self.port), "client": None}
        response: dict[str, Any] = {"status": 500, "headers": [], "body": b""}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response["status"], response["headers"] = message["status"], message["headers"]
            elif message["type"] == "http.response.body":
                response["body"] += message.get("body", b"")

        await self.app(scope, receive, send)
        await self._write(writer, response["status"], response["headers"], response["body"])

    async def _write(self, writer: asyncio.StreamWriter, status: int,
                     headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}".encode()]
        lines += [name + b": " + value for name, value in headers]
        if not any(name.lower() == b"content-length" for name, _ in headers):
            lines.append(b"content-length: " + str(len(body)).encode())
        lines.append(b"connection: close")
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)

    async def stop(self) -> None:
        if self._starting is not None:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                self._server = await self._starting
            self._starting = None
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=5)
        self.socket.close()
