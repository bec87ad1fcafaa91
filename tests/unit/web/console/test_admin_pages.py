"""The manager's administration pages in-process: PVO Quarantines, Centralized Services,
Audit (`web.console.admin_pages`).

`ctx.call` here runs the manager's real command sets (over a real configuration
file from `pvoq init`, a real SQLite quarantine store and audit trail, a real SSH
client with no gateway added) with a reload that loads the file as the manager
does; the browser tests (tests/e2e/test_console_admin.py) run the real processes.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consolehelpers import csrf_of, log_in, make_context
from fastapi.testclient import TestClient

from pvoq.admin.protocol import AdminServer
from pvoq.admin.registry import CommandSet
from pvoq.config.loader import load_config
from pvoq.config.template import ApplianceSpec
from pvoq.deploy import init_appliance
from pvoq.maillog import MailLog
from pvoq.quarantine.commands import QuarantineCommands
from pvoq.quarantine.definitions import QuarantineConfigCommands, effective
from pvoq.quarantine.overview import OverviewCommands
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.store import QuarantineStore
from pvoq.remote.client import SshClient
from pvoq.remote.commands import ManagerLinkCommands
from pvoq.remote.lookup import GatewayLocator
from pvoq.users.identity import authorize, web_peer
from pvoq.web.console.admin_pages import shown, utc_epoch
from pvoq.web.console.app import build_app
from pvoq.web.console.auth import User
from pvoq.web.console.context import ConsoleContext

GATEWAY = "gw1.example.com"


class Settler:
    def __init__(self, store: QuarantineStore) -> None:
        self.store = store

    def settle(self, mid: int, state: str, how: str = "manual",
               names: tuple[str, ...] | None = None) -> None:
        self.store.finish(mid, state)

    def settle_many(self, settled: list[tuple[int, str, tuple[str, ...]]], how: str) -> None:
        for mid, state, _ in settled:
            self.store.finish(mid, state)

    def allocate_mid(self) -> int:
        return 99999

    def send_copy(self, mid: int, address: str) -> int:
        return 99998


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A manager's directory from `pvoq init`, made once (each test works on a copy)."""
    root = tmp_path_factory.mktemp("init")
    init_appliance(root / "mgr", ApplianceSpec(
        role="manager", hostname="manager.test", serial="SN-M",
        gateways=[(GATEWAY, "127.0.0.1", 7026)]), ca_dir=root / "ca")
    return root


class Manager:
    """The manager's parts these pages reach, and `call`: their command sets on an admin
    registry with the appliance's role check, run as the console's user (as
    `Appliance.console_call` does)."""

    def __init__(self, root: Path, initialized: Path) -> None:
        shutil.copytree(initialized, root, dirs_exist_ok=True)
        self.path = root / "mgr" / "pvoq.xml"
        self.config = load_config(self.path)
        self.log = MailLog(root / "mgr-logs", appliance="manager test", serial="SN-M")
        self.store = QuarantineStore(f"sqlite:///{root / 'q.db'}", root / "bodies",
                                     settings=effective(self.config))
        self.store.sync_quarantines(effective(self.config))
        self.service = QuarantineService(self.store, Settler(self.store), self.log.info,
                                         audit_key_file=root / "audit.key")
        ssh = SshClient(root / "ssh", hostname="manager.test", timeout_s=5)
        self.admin = AdminServer(root / "admin.sock")
        self.admin.authorize = authorize
        sets: list[CommandSet] = [
            QuarantineCommands(self.service),
            QuarantineConfigCommands(lambda: self.config, self.reload, self.service.audit.append,
                                     self.store.held_count, self.log.info),
            OverviewCommands(lambda: self.store.settings, self.store.engine, lambda: 0),
            ManagerLinkCommands(lambda: self.config, ssh, GatewayLocator(ssh, self.log,
                                                                         lambda: None),
                                lambda: None)]
        for s in sets:
            s.register(self.admin)

    async def reload(self) -> str:
        self.config = load_config(self.path)
        pending = self.store.sync_quarantines(effective(self.config))
        self.service.apply_deleted_quarantines(pending)
        return "reloaded"

    async def call(self, name: str, args: dict[str, Any], user: User) -> dict[str, Any]:
        peer = web_peer(user.name, user.role, user.quarantines, user.origin)
        return await self.admin.execute(name, args, peer)


def put_one(store: QuarantineStore, mid: int, quarantine: str) -> None:
    """Quarantine one small message in *quarantine* (as a gateway's transfer would)."""
    meta = {"v": 1, "kind": "quarantine", "transfer_id": f"transfer-{mid}",
            "origin": {"hostname": GATEWAY, "serial": "GW-SN", "mid": mid},
            "sender": "alice@example.org",
            "recipients": [{"rid": 0, "address": "bob@example.com"}],
            "quarantines": [{"name": quarantine, "reason": "content filter:hr",
                             "stage": "content_filters"}],
            "received": 1700000000.0, "size": 0}
    store.add(mid=mid, meta=meta, body=b"Subject: x\r\n\r\nbody\r\n", origin_ip="127.0.0.1",
              subject="x")


@pytest.fixture
def manager(tmp_path: Path, initialized: Path) -> Iterator[Manager]:
    m = Manager(tmp_path, initialized)
    yield m
    m.store.close()


@pytest.fixture
def mctx(tmp_path: Path, manager: Manager) -> ConsoleContext:
    (tmp_path / "console").mkdir()
    ctx = make_context(tmp_path / "console", role="manager", service=manager.service,
                       call=manager.call)
    ctx.config = lambda: manager.config
    return ctx


@pytest.fixture
def web(mctx: ConsoleContext) -> Iterator[TestClient]:
    with TestClient(build_app(mctx), base_url="http://127.0.0.1") as c:
        yield c


def post_form(web: TestClient, page: str, action: str, data: dict[str, str]) -> Any:
    html = web.get(page).text
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
    return web.post(action, data={**fields, **data}, follow_redirects=False)


class TestQuarantinesPage:
    def test_lists_every_quarantine_with_its_settings(self, web: TestClient) -> None:
        log_in(web)
        page = web.get("/quarantines")
        assert page.status_code == 200
        for name in ("Policy", "Virus", "Outbreak", "Unclassified"):
            assert f'data-quarantine="{name}"' in page.text
        assert "30 days" in page.text and "1 day" in page.text

    def test_create_writes_the_file_and_reloads(self, web: TestClient, manager: Manager
                                                ) -> None:
        log_in(web)
        reply = post_form(web, "/quarantines/new", "/quarantines/new", {
            "name": "HR", "retention": "14", "retention_unit": "days",
            "default_action": "release", "subject_tag": "[EARLY]"})
        assert reply.status_code == 303, reply.text
        assert reply.headers["location"] == "/quarantines?done=add&name=HR"
        assert "<name>HR</name>" in manager.path.read_text()
        assert [q.name for q in manager.config.quarantines] == ["HR"]
        assert "HR" in manager.store.settings
        listed = web.get(reply.headers["location"]).text
        assert "Quarantine HR created" in listed
        record = manager.service.audit.tail(1)[0]
        assert (record["actor"], record["action"]) == ("alice", "quarantine-add")
        assert record["origin"].startswith("web ")

    def test_a_bad_retention_is_refused_naming_the_field(self, web: TestClient,
                                                         manager: Manager) -> None:
        log_in(web)
        before = manager.path.read_bytes()
        reply = post_form(web, "/quarantines/new", "/quarantines/new", {
            "name": "HR", "retention": "0", "retention_unit": "days",
            "default_action": "delete"})
        assert reply.status_code == 400
        assert re.search(r'id="error-retention"[^>]*>[^<]*not a positive number', reply.text)
        assert 'value="HR"' in reply.text                   # what was typed stays
        assert manager.path.read_bytes() == before

    def test_a_duplicate_name_is_refused_naming_the_field(self, web: TestClient) -> None:
        log_in(web)
        reply = post_form(web, "/quarantines/new", "/quarantines/new", {
            "name": "Policy", "retention": "1", "retention_unit": "days",
            "default_action": "delete"})
        assert reply.status_code == 409
        assert re.search(r'id="error-name"[^>]*>[^<]*already exists', reply.text)

    def test_edit_and_delete_with_held_messages(self, web: TestClient, manager: Manager
                                                ) -> None:
        log_in(web)
        post_form(web, "/quarantines/new", "/quarantines/new", {
            "name": "HR", "retention": "2", "retention_unit": "days",
            "default_action": "delete", "free_up_space": "on"})
        form = web.get("/quarantines/edit?name=HR").text
        assert 'id="free_up_space" checked' in form
        reply = post_form(web, "/quarantines/edit?name=HR", "/quarantines/edit", {
            "retention": "36", "retention_unit": "hours", "default_action": "delete"})
        assert reply.status_code == 303, reply.text
        assert manager.config.quarantines[0].retention_seconds == 36 * 3600
        assert manager.config.quarantines[0].free_up_space is False  # unchecked box

        put_one(manager.store, 7, "HR")
        confirm = web.get("/quarantines/delete?name=HR").text
        assert "holds 1 message" in confirm and "<strong>deleted</strong>" in confirm
        reply = post_form(web, "/quarantines/delete?name=HR", "/quarantines/delete", {})
        assert reply.status_code == 303
        assert manager.config.quarantines == ()
        assert manager.store.get(7)["state"] == "deleted"

    def test_a_stale_form_is_refused_and_nothing_changes(self, web: TestClient,
                                                         manager: Manager) -> None:
        log_in(web)
        html = web.get("/quarantines/new").text
        manager.path.write_bytes(manager.path.read_bytes() + b"\n")   # an editor meanwhile
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))
        reply = web.post("/quarantines/new", data={**fields, "name": "HR", "retention": "1",
                                                  "retention_unit": "days",
                                                  "default_action": "delete"})
        assert reply.status_code == 409 and "changed since" in reply.text
        assert manager.config.quarantines == ()

    def test_builtins_cannot_be_deleted(self, web: TestClient) -> None:
        log_in(web)
        reply = post_form(web, "/quarantines/delete?name=Virus", "/quarantines/delete",
                          {"name": "Virus"})
        assert reply.status_code == 400 and "built in" in reply.text

    def test_hostile_names_are_escaped(self, web: TestClient) -> None:
        log_in(web)
        reply = post_form(web, "/quarantines/new", "/quarantines/new", {
            "name": "<script>x</script>", "retention": "1", "retention_unit": "days",
            "default_action": "delete"})
        assert reply.status_code == 303
        page = web.get("/quarantines").text
        assert "<script>x" not in page and "&lt;script&gt;x" in page


class TestPermissions:
    @pytest.mark.parametrize("user", ["oscar", "rita"])
    def test_non_admins_get_403_on_every_page_and_post(self, web: TestClient,
                                                       manager: Manager, user: str) -> None:
        log_in(web, user)
        for path in ("/quarantines", "/quarantines/new", "/quarantines/edit?name=Policy",
                     "/quarantines/delete?name=Policy", "/centralized/pvo", "/audit"):
            assert web.get(path).status_code == 403, path
        token = csrf_of(web.get("/").text)
        for path in ("/quarantines/new", "/quarantines/edit", "/quarantines/delete",
                     "/centralized/pvo/add", "/centralized/pvo/test"):
            reply = web.post(path, data={"csrf_token": token, "name": "HR", "retention": "1",
                                         "retention_unit": "days",
                                         "default_action": "delete"})
            assert reply.status_code == 403, path
        assert manager.config.quarantines == ()
        home = web.get("/").text
        assert "/quarantines" not in home and "/audit" not in home

    def test_a_post_without_its_csrf_token_is_refused(self, web: TestClient,
                                                      manager: Manager) -> None:
        log_in(web)
        reply = web.post("/quarantines/new", data={"name": "HR", "retention": "1",
                                                  "retention_unit": "days",
                                                  "default_action": "delete"})
        assert reply.status_code == 403
        assert manager.config.quarantines == ()


class TestCentralizedPage:
    def test_shows_the_service_and_the_gateways(self, web: TestClient, manager: Manager
                                                ) -> None:
        log_in(web)
        page = web.get("/centralized/pvo").text
        cpq = manager.config.cpq_listener
        assert cpq is not None
        assert f'id="service-port">{cpq.port}<' in page
        assert f'data-gateway="{GATEWAY}"' in page
        assert "Configured address (not added over SSH)" in page

    def test_test_of_a_gateway_not_added_says_so(self, web: TestClient) -> None:
        log_in(web)
        reply = post_form(web, "/centralized/pvo", "/centralized/pvo/test", {"name": GATEWAY})
        assert reply.status_code == 400
        assert "has not been added" in reply.text

    def test_add_with_a_bad_port_names_the_field(self, web: TestClient) -> None:
        log_in(web)
        reply = post_form(web, "/centralized/pvo", "/centralized/pvo/add",
                          {"name": GATEWAY, "ssh_port": "99999", "token": "t"})
        assert reply.status_code == 400 and "ssh_port: not a port number" in reply.text


class TestAuditPage:
    def test_filters_pages_and_verifies(self, web: TestClient, manager: Manager) -> None:
        log_in(web)
        for _ in range(3):
            manager.service.audit.append("bob", "admin-socket", "view", {"mid": 5})
        manager.service.audit.append("carol", "api 10.0.0.1", "release",
                                     {"mids": [5, 6], "how": "manual", "quarantines": []})
        page = web.get("/audit").text
        assert "Chain verified. Audit trail intact: 4 records." in page
        by_carol = web.get("/audit?actor=carol").text
        assert by_carol.count('class="actor">carol<') == 1 and ">bob<" not in by_carol
        mid6 = web.get("/audit?mid=6").text
        assert mid6.count("<tr data-seq=") == 1
        first = web.get("/audit?actor=bob&limit=2").text
        assert first.count("<tr data-seq=") == 2
        older = re.search(r'href="([^"]+)" id="older"', first)
        assert older is not None
        second = web.get(older.group(1).replace("&amp;", "&")).text
        assert second.count("<tr data-seq=") == 1 and 'data-seq="1"' in second

    def test_bad_filters_are_400_naming_the_filter(self, web: TestClient) -> None:
        log_in(web)
        for query, words in (("mid=abc", "mid: not a number"), ("since=yesterday", "since:"),
                             ("limit=100000", "limit: out of range"),
                             ("acter=x", "acter: unknown filter")):
            reply = web.get(f"/audit?{query}")
            assert reply.status_code == 400, query
            assert words in reply.text, query

    def test_a_broken_chain_is_shown(self, web: TestClient, manager: Manager) -> None:
        from sqlalchemy import update

        from pvoq.quarantine.schema import audit
        log_in(web)
        manager.service.audit.append("bob", "admin-socket", "view", {"mid": 5})
        with manager.store.engine.begin() as conn:
            conn.execute(update(audit).values(actor="mallory"))
        page = web.get("/audit").text
        assert "Chain NOT verified." in page and "BROKEN at record 1" in page


def test_shown_makes_control_characters_visible() -> None:
    assert shown("a\x1b[31mb\u202ec") == "a\\x1b[31mb\\u202ec"
    assert shown("x" * 10, 4) == "xxxx…"


def test_utc_epoch() -> None:
    assert utc_epoch("since", "2026-11-30T15:04") == "1796051040"
    assert utc_epoch("since", "") == ""


def test_no_inline_script_or_style_on_these_pages(web: TestClient) -> None:
    log_in(web)
    for path in ("/quarantines", "/quarantines/new", "/quarantines/edit?name=Policy",
                 "/quarantines/delete?name=Policy", "/centralized/pvo", "/audit"):
        html = web.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert " style=" not in html and "<style" not in html, path
        assert '<link rel="stylesheet" href="/static/admin.css">' in html, path
    assert web.get("/static/admin.css").status_code == 200
