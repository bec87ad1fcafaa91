"""Tests for the admin socket's identify/authorize hooks and `execute`, over a real socket."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from pvoq.admin.protocol import AdminServer, CommandError, Peer, call
from pvoq.errors import Forbidden


class Refused(Forbidden):
    pass


def serve(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        server = AdminServer(tmp_path / "admin.sock")
        seen: list[Peer] = []

        async def whoami(args: dict[str, Any], peer: Peer) -> dict[str, Any]:
            seen.append(peer)
            return {"data": {"actor": peer.actor, "role": peer.role}}

        async def shutdown(args: dict[str, Any]) -> dict[str, Any]:
            return {"text": "down"}

        server.register("whoami", whoami, peer=True)
        server.register("shutdown", shutdown)
        await server.start()
        try:
            await body(server, seen)
        finally:
            await server.stop()
    asyncio.run(main())


def test_identify_names_the_actor_and_authorize_refuses(tmp_path: Path) -> None:
    async def body(server: AdminServer, seen: list[Peer]) -> None:
        from dataclasses import replace
        server.identify = lambda peer: replace(peer, role="read-only", account="rita")

        def authorize(name: str, peer: Peer) -> None:
            if name == "shutdown" and peer.role != "admin":
                raise Refused(f"{peer.actor} may not run {name}")
        server.authorize = authorize
        loop = asyncio.get_running_loop()
        who = await loop.run_in_executor(None, call, server.path, "whoami")
        assert who == {"ok": True, "data": {"actor": "rita", "role": "read-only"}}
        assert seen[0].uid == os.getuid()
        refused = await loop.run_in_executor(None, call, server.path, "shutdown")
        assert refused == {"ok": False, "error": "rita may not run shutdown", "exit": 1}
    serve(tmp_path, body)


def test_a_refused_connection_answers_every_command(tmp_path: Path) -> None:
    async def body(server: AdminServer, seen: list[Peer]) -> None:
        def refuse(peer: Peer) -> Peer:
            raise Refused(f"uid {peer.uid} is not a user")
        server.identify = refuse
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, call, server.path, "whoami")
        assert reply["ok"] is False and reply["error"] == f"uid {os.getuid()} is not a user"
        assert seen == []
    serve(tmp_path, body)


def test_execute_in_process(tmp_path: Path) -> None:
    async def body(server: AdminServer, seen: list[Peer]) -> None:
        web = Peer(0, -1, -1, "alice", role="operator", account="alice", via="web 192.0.2.9")
        assert await server.execute("whoami", {}, web) == {
            "data": {"actor": "alice", "role": "operator"}}
        assert seen[0].origin == "web 192.0.2.9"
        try:
            await server.execute("nope", {}, web)
        except CommandError as exc:
            assert str(exc) == "Unknown command: nope"
        else:
            raise AssertionError("an unknown command ran")
    serve(tmp_path, body)
