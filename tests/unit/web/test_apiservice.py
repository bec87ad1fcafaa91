"""`ApiService`: the REST API both roles serve, over real HTTP on 127.0.0.1 (uvicorn).

The application (and the quarantine service it acts on) is built on the first
connection; a reload restarts the server only when `<api>` changed, moves it,
or stops it; a port that cannot be bound keeps it where it was.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "quarantine"))
from qhelpers import RecordingSettler

from pvoq.config.model import ApiSettings, ApiToken
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.settings import merge_settings
from pvoq.quarantine.store import QuarantineStore
from pvoq.users import UserStore
from pvoq.web.apiservice import ApiService

SETTINGS = merge_settings([])
TOKEN = ApiToken("t-admin", "alice", "admin")


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, text: str) -> None:
        self.lines.append(f"Info: {text}")

    def warning(self, text: str) -> None:
        self.lines.append(f"Warning: {text}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(**api: Any) -> Any:
    return SimpleNamespace(api=ApiSettings(**{"enabled": True, "address": "127.0.0.1",
                                              "tokens": (TOKEN,), **api}))


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[list[Any], list[QuarantineService], Any]]:
    store = QuarantineStore(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "bodies",
                            settings=SETTINGS)
    store.sync_quarantines(SETTINGS)
    built: list[QuarantineService] = []

    def service() -> QuarantineService:
        built.append(QuarantineService(store, RecordingSettler(store), lambda line: None))
        return built[-1]

    current: list[Any] = [_config(port=_free_port())]
    api = ApiService(config=lambda: current[0], service=service,
                     users=UserStore(tmp_path / "users.json"), maillog=_Log())  # type: ignore[arg-type]
    yield current, built, api
    store.close()


async def _get(port: int, path: str = "/api/v2.0/quarantine/messages") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t-admin\r\n"
                 "Connection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


def test_the_api_and_its_service_are_built_on_the_first_connection(parts) -> None:  # type: ignore[no-untyped-def]
    current, built, api = parts

    async def main() -> tuple[int, bytes, int]:
        await api.start()
        try:
            await asyncio.sleep(0.2)
            before = len(built)
            answer = await _get(api.port)
            return before, answer, len(built)
        finally:
            await api.stop()

    before, answer, after = asyncio.run(main())
    assert before == 0
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert after == 1
    assert api.maillog.lines == [f"Info: REST API listening on 127.0.0.1 port {current[0].api.port}"]
    assert api.server is None and api.address is None


def test_a_reload_restarts_only_for_a_changed_api_moves_or_stops_it(parts) -> None:  # type: ignore[no-untyped-def]
    current, built, api = parts

    async def reload(**changed: Any) -> None:
        old, current[0] = current[0], _config(**changed)
        await api.after_reload(old, current[0])

    async def main() -> list[bytes]:
        answers = []
        await api.start()
        first = api.server
        await reload(port=current[0].api.port)        # the same <api>: nothing to do
        assert api.server is first
        await reload(port=_free_port())               # moved, in place
        assert api.server is first and api.port == current[0].api.port
        answers.append(await _get(api.port))
        await reload(port=current[0].api.port, enabled=False)   # no <api> any more
        assert api.server is None
        await reload(port=_free_port())               # and back
        answers.append(await _get(api.port))
        await api.stop()
        return answers

    answers = asyncio.run(main())
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers), [a[:100] for a in answers]
    lines = api.maillog.lines
    assert sum("REST API restarted" in x for x in lines) == 1, lines
    assert any("REST API stopped: no <api>" in x for x in lines), lines
    assert sum("REST API listening" in x for x in lines) == 2, lines


def test_a_port_that_cannot_be_bound_keeps_the_api_where_it_was(parts) -> None:  # type: ignore[no-untyped-def]
    current, built, api = parts
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()

    async def main() -> bytes:
        await api.start()
        old = current[0]
        current[0] = _config(port=taken.getsockname()[1])
        await api.after_reload(old, current[0])
        try:
            return await _get(api.port)
        finally:
            await api.stop()

    try:
        answer = asyncio.run(main())
    finally:
        taken.close()
    assert answer.startswith(b"HTTP/1.1 200")
    assert any(x.startswith("Warning: REST API kept on 127.0.0.1 port") for x in api.maillog.lines)
