"""The exception tree (`pvoq.errors`): every part's exception on its branch, and the edges'
mappings (the admin socket's exit, the REST API's status)."""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import tempfile
from pathlib import Path

import pytest

from pvoq import errors
from pvoq.admin.protocol import AdminServer, AdminUnavailable, CommandError, call
from pvoq.config.errors import ConfigError
from pvoq.config.filterlang import FilterSyntaxError
from pvoq.cpq.metadata import MetadataError
from pvoq.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    OperatorError,
    ProtocolError,
    PvoqError,
    TemporaryFailure,
    http_status,
)
from pvoq.manager.rescan import RescanFailed
from pvoq.quarantine.audit import AuditKeyError
from pvoq.quarantine.roles import PermissionDenied
from pvoq.quarantine.search import SearchError
from pvoq.quarantine.settings import SettingsError
from pvoq.quarantine.store import QuarantineError
from pvoq.remote.keys import SshFault
from pvoq.scan.antivirus import ScannerUnavailable
from pvoq.scan.message import Unscannable
from pvoq.scan.outbreak import RulesError
from pvoq.scan.verdict import ScanError
from pvoq.scan.workers import ScannerLost
from pvoq.smtp.client import DeliveryError
from pvoq.spool.log import SpoolLogError
from pvoq.testing.clamd import ClamdUnavailable
from pvoq.testing.localdeploy import DeploymentError
from pvoq.testing.pgserver import PostgresUnavailable

# Each part's exception and the branch it belongs on.
BRANCHES: dict[type[BaseException], type[PvoqError]] = {
    CommandError: OperatorError,
    SshFault: OperatorError,
    AuditKeyError: OperatorError,
    RescanFailed: OperatorError,
    ConfigError: Invalid,
    FilterSyntaxError: Invalid,
    RulesError: Invalid,
    SearchError: Invalid,
    SettingsError: Invalid,
    PermissionDenied: Forbidden,
    QuarantineError: NotFound,
    ScanError: TemporaryFailure,
    ScannerUnavailable: TemporaryFailure,
    ScannerLost: TemporaryFailure,
    DeliveryError: TemporaryFailure,
    AdminUnavailable: TemporaryFailure,
    MetadataError: ProtocolError,
    SpoolLogError: PvoqError,
    Unscannable: PvoqError,
    ClamdUnavailable: PvoqError,
    PostgresUnavailable: PvoqError,
    DeploymentError: PvoqError,
}

# Modules whose exceptions are on the tree: each of their exception classes must be listed.
MODULES = ["pvoq.admin.protocol", "pvoq.config.errors", "pvoq.config.filterlang",
           "pvoq.cpq.bounds", "pvoq.cpq.metadata", "pvoq.cpq.transfer",
           "pvoq.manager.rescan", "pvoq.quarantine.audit", "pvoq.quarantine.roles", "pvoq.quarantine.search",
           "pvoq.quarantine.settings", "pvoq.quarantine.store", "pvoq.remote.keys",
           "pvoq.scan.antivirus", "pvoq.scan.message", "pvoq.scan.outbreak", "pvoq.scan.verdict", "pvoq.scan.workers",
           "pvoq.smtp.client", "pvoq.spool.log", "pvoq.testing.clamd",
           "pvoq.testing.localdeploy", "pvoq.testing.pgserver"]


class TestTree:
    @pytest.mark.parametrize("cls", list(BRANCHES), ids=lambda c: c.__name__)
    def test_each_exception_is_on_its_branch(self, cls: type[BaseException]) -> None:
        """Every part's exception is a PvoqError, on the branch its edges expect."""
        assert issubclass(cls, PvoqError)
        assert issubclass(cls, BRANCHES[cls])

    def test_branches_are_disjoint(self) -> None:
        """An exception is an operator error, a temporary failure or a protocol error, not two."""
        for cls in BRANCHES:
            assert sum(issubclass(cls, b) for b in (OperatorError, TemporaryFailure,
                                                     ProtocolError)) <= 1, cls

    @pytest.mark.parametrize("module", MODULES)
    def test_every_exception_of_the_listed_modules_is_on_the_tree(self, module: str) -> None:
        """No exception class of these modules is left off the tree (or off BRANCHES)."""
        mod = importlib.import_module(module)
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == module and issubclass(cls, Exception):
                assert cls in BRANCHES, f"{module}.{cls.__name__} has no branch"

    def test_value_errors_stay_value_errors(self) -> None:
        """Exceptions that were ValueErrors still are: callers catching ValueError see them."""
        for cls in (SearchError, SettingsError, MetadataError, FilterSyntaxError, RulesError):
            assert issubclass(cls, ValueError)
        assert issubclass(ClamdUnavailable, RuntimeError)

    def test_the_docstring_draws_every_class(self) -> None:
        """The tree in the module docstring names every class on it."""
        doc = errors.__doc__ or ""
        for cls in [*BRANCHES, OperatorError, Invalid, Forbidden, NotFound, Conflict,
                    TemporaryFailure, ProtocolError]:
            assert cls.__name__ in doc, cls

    def test_errors_imports_nothing_from_pvoq(self) -> None:
        """pvoq.errors is at the bottom of the dependency graph."""
        source = Path(errors.__file__).read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("pvoq"), node.module
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("pvoq") for a in node.names)

    def test_messages_are_kept(self) -> None:
        """Reparenting changed no message or attribute."""
        assert str(QuarantineError("No message with MID 4 in the quarantines.")) == \
            "No message with MID 4 in the quarantines."
        exc = DeliveryError("550 no", code=550)
        assert (exc.reason, exc.code, exc.temporary) == ("550 no", 550, False)
        assert str(ConfigError("bad", field="hostname", line=3, path="x.xml")) == \
            "x.xml:3: hostname: bad"
        assert ScanError("down", stage="antivirus").stage == "antivirus"
        syntax = FilterSyntaxError("unterminated string", 2, 7)
        assert (str(syntax), syntax.message, syntax.line, syntax.column) == \
            ("line 2, column 7: unterminated string", "unterminated string", 2, 7)
        assert str(RulesError("rules: not JSON")) == "rules: not JSON"


class TestHttpStatus:
    @pytest.mark.parametrize(("exc", "status"), [
        (SearchError("unknown text operator"), 400),
        (SettingsError("delay must be one of"), 400),
        (ConfigError("bad", field="f"), 400),
        (Invalid("x"), 400),
        (CommandError("refused"), 400),
        (FilterSyntaxError("unterminated string", 1, 4), 400),
        (RulesError("rules: missing id"), 400),
        (PermissionDenied("role read-only may not release"), 403),
        (Forbidden("x"), 403),
        (QuarantineError("No message with MID 9 in the quarantines."), 404),
        (NotFound("x"), 404),
        (Conflict("x"), 409),
    ], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
    def test_operator_errors_map_to_their_4xx(self, exc: BaseException, status: int) -> None:
        assert http_status(exc) == status

    @pytest.mark.parametrize("exc", [
        ScanError("engine down"), DeliveryError("421 later"), MetadataError("bad"),
        SpoolLogError("read-only"), AdminUnavailable("none"), PvoqError("x"),
        ClamdUnavailable("no clamd"), PostgresUnavailable("no initdb"),
        DeploymentError("timed out"), ValueError("x"), KeyError("x"), RuntimeError("x")],
        ids=lambda e: type(e).__name__)
    def test_anything_else_has_no_status(self, exc: BaseException) -> None:
        """Not the client's doing: the API lets it become a 500, as before."""
        assert http_status(exc) is None


class TestAdminSocketMapping:
    def _answer(self, exc: BaseException) -> dict[str, object]:
        """What `call` gets back from a command that raised *exc*."""
        async def command(args: dict[str, object]) -> dict[str, object]:
            raise exc

        async def run(path: Path) -> dict[str, object]:
            server = AdminServer(path)
            server.register("x.fail", command)
            await server.start()
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    None, lambda: call(path, "x.fail", timeout_s=10))
            finally:
                await server.stop()

        with tempfile.TemporaryDirectory(dir="/tmp") as d:  # a short socket path
            return asyncio.run(run(Path(d) / "admin.sock"))

    @pytest.mark.parametrize("exc", [
        CommandError("No record of host: a.example"), QuarantineError("MID 3 is not held."),
        PermissionDenied("role helpdesk may not delete"), SearchError("limit must be positive"),
        SshFault("connection refused")], ids=lambda e: type(e).__name__)
    def test_an_operator_error_is_its_text_and_exit_1(self, exc: BaseException) -> None:
        assert self._answer(exc) == {"ok": False, "error": str(exc), "exit": 1}

    @pytest.mark.parametrize("exc", [
        ValueError("bad"), KeyError("k"), ScanError("down"), SpoolLogError("read-only"),
        RuntimeError("boom")], ids=lambda e: type(e).__name__)
    def test_anything_else_is_an_internal_error(self, exc: BaseException) -> None:
        assert self._answer(exc) == {
            "ok": False, "error": f"internal error: {type(exc).__name__}: {exc}", "exit": 1}
