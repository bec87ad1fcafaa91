"""The quarantine operator commands' answers to errors: a bad argument or the service's
refusal is a `CommandError` (exit 1) whose text has no quotes at either end; the commands'
own refusals pass as written; anything else is left to the admin socket (internal error)."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from qhelpers import RecordingSettler, put

from pvoq.admin.protocol import AdminServer, CommandError, Peer, call
from pvoq.quarantine.commands import QuarantineCommands
from pvoq.quarantine.roles import PermissionDenied
from pvoq.quarantine.search import SearchError
from pvoq.quarantine.service import ActionResult, QuarantineService
from pvoq.quarantine.settings import (
    DAY,
    RELEASE,
    QuarantineSettings,
    SettingsError,
    merge_settings,
)
from pvoq.quarantine.store import QuarantineError, QuarantineStore

SETTINGS = merge_settings([QuarantineSettings("HR", 2 * DAY, RELEASE, False)])
PEER = Peer(pid=4242, uid=1000, gid=1000, user="alice")


class FakeService:
    """Raises what it is given from `details`, `delay`, and answers `copy` with *result*."""

    def __init__(self, exc: BaseException | None = None,
                 result: ActionResult | None = None) -> None:
        self.exc, self.result = exc, result

    def details(self, caller: object, mid: int) -> dict[str, Any]:
        if self.exc is not None:
            raise self.exc
        return {"mid": mid}

    def delay(self, caller: object, mid: int, delay: str, quarantine: str | None) -> ActionResult:
        if self.exc is not None:
            raise self.exc
        assert self.result is not None
        return self.result

    def copy(self, caller: object, mid: int, address: str) -> ActionResult:
        assert self.result is not None
        return self.result


def commands(service: FakeService) -> QuarantineCommands:
    return QuarantineCommands(cast(QuarantineService, service))


def refusal(coro: Any) -> str:
    with pytest.raises(CommandError) as info:
        asyncio.run(coro)
    return str(info.value)


class TestGuard:
    def test_an_answer_passes(self) -> None:
        assert asyncio.run(commands(FakeService()).show({"mid": "7"}, PEER)) == {"data": {"mid": 7}}

    def test_a_missing_argument_is_its_name(self) -> None:
        assert refusal(commands(FakeService()).show({}, PEER)) == "mid"

    def test_a_malformed_argument_is_the_value_error_without_end_quotes(self) -> None:
        assert refusal(commands(FakeService()).show({"mid": "x"}, PEER)) == \
            "invalid literal for int() with base 10: 'x"

    @pytest.mark.parametrize(("exc", "text"), [
        (QuarantineError("No message with MID 4 in the quarantines."),
         "No message with MID 4 in the quarantines."),
        (PermissionDenied("role admin may not frob"), "role admin may not frob"),
        (SearchError("order direction must be asc or desc, not 'up'"),
         "order direction must be asc or desc, not 'up"),
        (SettingsError("delay must be one of 1h, not '2y'"), "delay must be one of 1h, not '2y"),
        (QuarantineError("unknown action 'x'"), "unknown action 'x"),
    ], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else "")
    def test_a_service_refusal_is_its_text_without_end_quotes(self, exc: BaseException,
                                                             text: str) -> None:
        assert refusal(commands(FakeService(exc)).show({"mid": 1}, PEER)) == text
        assert refusal(commands(FakeService(exc)).delay({"mid": 1, "delay": "2y"}, PEER)) == text

    def test_a_refusal_of_the_command_itself_is_as_written(self) -> None:
        result = ActionResult(1, False, text="not an address: 'nobody'")
        assert refusal(commands(FakeService(result=result)).copy(
            {"mid": 1, "address": "nobody"}, PEER)) == "not an address: 'nobody'"

    def test_anything_else_passes_to_the_admin_socket(self) -> None:
        with pytest.raises(RuntimeError, match="boom"):
            asyncio.run(commands(FakeService(RuntimeError("boom"))).show({"mid": 1}, PEER))


class TestBounds:
    """Over the admin socket too, an out-of-range MID or search value is an operator error."""

    @pytest.fixture
    def real(self, tmp_path: Path) -> Iterator[QuarantineCommands]:
        store = QuarantineStore(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "bodies",
                                settings=SETTINGS)
        store.sync_quarantines(SETTINGS)
        put(store, 1, "Policy")
        try:
            yield QuarantineCommands(QuarantineService(store, RecordingSettler(store),
                                                       lambda line: None))
        finally:
            store.close()

    @pytest.mark.parametrize("mid", [2**63, 2**64])
    def test_a_huge_mid_is_an_unknown_message(self, real: QuarantineCommands, mid: int
                                              ) -> None:
        unknown = f"No message with MID {mid} in the quarantines."
        assert refusal(real.release({"mid": mid}, PEER)) == unknown
        assert refusal(real.delete({"mid": str(mid)}, PEER)) == unknown
        assert refusal(real.delay({"mid": mid, "delay": "8h"}, PEER)) == unknown
        assert refusal(real.show({"mid": mid}, PEER)) == unknown

    @pytest.mark.parametrize("args", [
        {"query": {"subject": {"op": "contains", "value": "\x00"}}},
        {"query": {"attachment_min_size": 10**22}}, {"query": {"offset": "x"}},
        {"query": {"quarantines": ["\x00"]}}], ids=repr)
    def test_a_bad_search_is_refused(self, real: QuarantineCommands,
                                     args: dict[str, Any]) -> None:
        refusal(real.search(args, PEER))
        refusal(real.bulk({**args, "action": "delete"}, PEER))

    def test_a_bulk_still_answers_as_before(self, real: QuarantineCommands) -> None:
        answer = asyncio.run(real.bulk({"action": "delete", "query": {}}, PEER))
        assert answer["text"] == "delete: did act on 1 messages (1 done)."

    def test_verify_under_another_key_says_so(self, real: QuarantineCommands) -> None:
        asyncio.run(real.search({"query": {}}, PEER))
        assert asyncio.run(real.audit_verify({}))["text"] == "Audit trail intact: 1 records."
        real.service.audit.key = b"\x00" * 32      # as if audit.key were another manager's
        assert refusal(real.audit_verify({})).startswith(
            "Audit trail cannot be verified: wrong key: ")


class TestActor:
    """Over a real admin socket, the audit trail names the connected process's user, whatever
    `user` or `LOGNAME` the client gives; a release and a search by one user name the same."""

    def test_the_actor_is_the_socket_peer(self, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
        store = QuarantineStore(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "bodies",
                                settings=SETTINGS)
        store.sync_quarantines(SETTINGS)
        put(store, 1, "Policy")
        service = QuarantineService(store, RecordingSettler(store), lambda line: None)
        directory = Path(tempfile.mkdtemp(prefix="pvoq-actor-"))
        server = AdminServer(directory / "admin.sock")
        QuarantineCommands(service).register(server)
        monkeypatch.setenv("LOGNAME", "mallory")

        async def scenario() -> list[dict[str, Any]]:
            await server.start()
            try:
                return [await asyncio.to_thread(call, server.path, name, args) for name, args in [
                    ("quarantine.search", {"query": {}, "user": "root"}),
                    ("quarantine.release", {"mid": 1, "user": "admin"}),
                    ("quarantine.saved", {"op": "list", "user": "root"})]]
            finally:
                await server.stop()

        try:
            replies = asyncio.run(scenario())
            assert [r["ok"] for r in replies] == [True, True, True], replies
            records = service.audit.tail()
        finally:
            store.close()
            shutil.rmtree(directory, ignore_errors=True)
        me = pwd.getpwuid(os.getuid()).pw_name
        assert [(r["action"], r["actor"], r["origin"]) for r in records] == [
            (action, me, f"admin-socket (uid {os.getuid()}, pid {os.getpid()})")
            for action in ("search", "release")]

