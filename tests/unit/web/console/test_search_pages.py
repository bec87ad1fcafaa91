"""The manager's quarantine search, bulk and message pages, in process over a real SQLite
store (the browser tests are tests/e2e/test_console_search.py and test_console_message.py)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from consolehelpers import PASSWORD, csrf_of, log_in, make_context
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parent.parent.parent / "quarantine"))
from qhelpers import RecordingSettler, meta, put

from pvoq.maillog import MailLog
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.settings import DAY, RELEASE, QuarantineSettings, merge_settings
from pvoq.quarantine.store import QuarantineStore
from pvoq.users import UserStore
from pvoq.web.console.app import build_app
from pvoq.web.console.context import ConsoleContext

SETTINGS = merge_settings([QuarantineSettings("HR", 2 * DAY, RELEASE, False)])
HOSTILE_SUBJECT = '<script>alert("s")</script>[/bold]\x1b[31m'


class Manager:
    def __init__(self, ctx: ConsoleContext, store: QuarantineStore,
                 settler: RecordingSettler) -> None:
        self.ctx, self.store, self.settler = ctx, store, settler


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The users, hashed once for the module (argon2 is slow on purpose)."""
    root = tmp_path_factory.mktemp("users")
    ctx = make_context(root, role="manager")
    ctx.users.add("harry", PASSWORD, "custom", quarantines=["HR"])
    ctx.users.add("hanna", PASSWORD, "helpdesk")
    return root / "users.json"


@pytest.fixture
def manager(tmp_path: Path, users_file: Path) -> Iterator[Manager]:
    store = QuarantineStore(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "bodies",
                            settings=SETTINGS)
    store.sync_quarantines(SETTINGS)
    settler = RecordingSettler(store)
    service = QuarantineService(store, settler, lambda line: None)
    shutil.copy(users_file, tmp_path / "users.json")
    ctx = ConsoleContext(role="manager", hostname="manager.example.com",
                         config=lambda: None,  # type: ignore[arg-type,return-value]
                         maillog=MailLog(tmp_path / "logs", appliance="manager test",
                                         serial="TEST"),
                         users=UserStore(tmp_path / "users.json"), service=service,
                         https=False)
    put(store, 1, "Policy", sender="alice@example.org", subject="Quarterly report")
    put(store, 2, ("Virus", "a/v verdict:VIRAL Eicar-Test-Signature"),
        sender="mallory@evil.example", subject="Invoice", attachment=("invoice.exe", 100))
    put(store, 3, "HR", sender="bob@example.com", subject="Salary review")
    store.add(mid=4, meta=meta(("Policy", '<img src=x onerror="alert(1)">')),
              body=hostile(), origin_ip="10.1.2.1", subject=HOSTILE_SUBJECT)
    try:
        yield Manager(ctx, store, settler)
    finally:
        store.close()


def hostile() -> bytes:
    msg = EmailMessage()
    msg["Subject"] = HOSTILE_SUBJECT
    msg["X-Evil"] = "<b>bold</b>\x07"
    msg["X-Folded"] = "first-half " + "x" * 80 + " second-half"
    msg.set_content("plain <b>text</b>")
    msg.add_alternative('<p>Hi<script>alert(1)</script><img src="http://127.0.0.1:9/x.png">'
                        "</p>", subtype="html")
    msg.add_attachment(b"x", maintype="application", subtype="octet-stream",
                       filename="<svg onload=alert(2)>.exe")
    return bytes(msg)


@pytest.fixture
def client(manager: Manager) -> Iterator[TestClient]:
    with TestClient(build_app(manager.ctx), base_url="http://127.0.0.1") as c:
        yield c


def mids(html: str) -> list[int]:
    return [int(m) for m in re.findall(r'<tr class="(?:result|planned)" data-mid="(\d+)"', html)]


class TestSearch:
    def test_anonymous_is_sent_to_login(self, client: TestClient) -> None:
        r = client.get("/quarantine/search", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")

    def test_search_filters_and_counts(self, client: TestClient) -> None:
        log_in(client)
        page = client.get("/quarantine/search")
        assert page.status_code == 200 and mids(page.text) == [4, 3, 2, 1]
        assert re.search(r'id="total">4 messages<', page.text)
        r = client.get("/quarantine/search", params={"reasonFilterValue": "eicar"})
        assert mids(r.text) == [2] and 'id="total">1 message<' in r.text
        r = client.get("/quarantine/search", params=[("quarantines", "HR"),
                                                     ("quarantines", "Virus")])
        assert mids(r.text) == [3, 2]
        r = client.get("/quarantine/search", params={"limit": 20, "orderBy": "subject",
                                                     "orderDir": "asc"})
        assert mids(r.text) == [4, 2, 1, 3]

    SENDER_HAS_E = {"limit": 20, "envelopeSenderFilterBy": "contains",
                    "envelopeSenderFilterValue": "e"}

    def test_a_total_over_the_cap_says_more_than(self, client: TestClient) -> None:
        """Over the count's cap the page says "more than"; the next page is still offered."""
        log_in(client)
        client.app.state.ctx.service.total_cap = 2  # type: ignore[attr-defined]
        r = client.get("/quarantine/search", params=self.SENDER_HAS_E)
        assert 'id="total">more than 2 messages<' in r.text and mids(r.text) == [4, 3, 2, 1]
        assert "Act on all more than 2 results" in r.text
        assert 'id="total">4 messages<' in client.get("/quarantine/search").text
        for mid in range(10, 30):
            put(client.app.state.ctx.service.store, mid, "Policy",  # type: ignore[attr-defined]
                sender="e@example.com")
        r = client.get("/quarantine/search", params=self.SENDER_HAS_E)
        assert 'id="next-page"' in r.text

    def test_paging_links(self, client: TestClient) -> None:
        log_in(client)
        page = client.get("/quarantine/search", params={"limit": 20})
        assert "next-page" not in page.text
        for mid in range(10, 30):
            put(client.app.state.ctx.service.store, mid, "Policy")  # type: ignore[attr-defined]
        page = client.get("/quarantine/search", params={"limit": 20})
        link = re.search(r'href="([^"]+)" id="next-page"', page.text)
        assert link is not None
        second = client.get(link.group(1).replace("&amp;", "&"))
        assert mids(second.text) == [4, 3, 2, 1]

    @pytest.mark.parametrize("query", ["subjectFilterValu=x", "limit=9999", "offset=-1",
                                       "startDate=soon", "orderBy=colour"])
    def test_a_bad_parameter_is_a_400_naming_it(self, client: TestClient, query: str) -> None:
        log_in(client)
        r = client.get(f"/quarantine/search?{query}")
        assert r.status_code == 400 and query.split("=")[0] in r.text
        assert 'id="search-error"' in r.text

    def test_mail_strings_are_escaped(self, client: TestClient) -> None:
        log_in(client)
        page = client.get("/quarantine/search").text
        assert "<script>alert" not in page and "onerror=" not in page.replace(
            "onerror=&#34;", "")
        assert "&lt;script&gt;alert(&#34;s&#34;)&lt;/script&gt;[/bold]\\x1b[31m" in page
        assert "\x1b" not in page

    def test_custom_role_sees_only_granted(self, client: TestClient) -> None:
        log_in(client, "harry")
        page = client.get("/quarantine/search")
        assert mids(page.text) == [3]
        assert 'value="Policy"' not in page.text and 'value="HR"' in page.text
        assert client.get("/quarantine/search?quarantines=Policy").status_code == 403

    def test_saved_searches(self, client: TestClient) -> None:
        log_in(client)
        page = client.get("/quarantine/search", params={"subjectFilterBy": "begins_with",
                                                        "subjectFilterValue": "Inv"})
        search = re.search(r'name="search" value="([^"]*)"', page.text)
        assert search is not None
        r = client.post("/quarantine/search/saved", data={
            "csrf_token": csrf_of(page.text), "name": "invoices",
            "search": search.group(1).replace("&amp;", "&")})
        assert r.status_code == 200 and mids(r.text) == [2]
        loaded = client.get("/quarantine/search?saved=invoices")
        assert mids(loaded.text) == [2] and "invoices" in loaded.text
        assert mids(client.get("/quarantine/search?saved=").text) == [4, 3, 2, 1]
        unknown = client.get("/quarantine/search?saved=nothing")
        assert unknown.status_code == 400 and "no saved search named" in unknown.text
        r = client.post("/quarantine/search/saved", data={"name": "invoices"})
        assert r.status_code == 403  # no CSRF token


class TestBulk:
    def dry_run(self, client: TestClient, search: str, action: str = "delete",
                **extra: str) -> str:
        page = client.get("/quarantine/search?" + search)
        r = client.post("/quarantine/bulk", data={"csrf_token": csrf_of(page.text),
                                                  "search": search, "action": action, **extra})
        assert r.status_code == 200, r.text
        return r.text

    def test_dry_run_lists_and_changes_nothing_then_confirm_acts(
            self, client: TestClient, manager: Manager) -> None:
        log_in(client)
        plan = self.dry_run(client, "quarantines=Policy")
        assert mids(plan) == [1, 4] and 'id="dry-run-count">2<' in plan
        assert manager.store.held_count() == 4
        plan_id = re.search(r'name="plan" value="([^"]+)"', plan)
        assert plan_id is not None
        r = client.post("/quarantine/bulk/confirm", data={"csrf_token": csrf_of(plan),
                                                          "plan": plan_id.group(1)},
                        follow_redirects=False)
        assert r.status_code == 303
        job = r.headers["location"]
        deadline = time.monotonic() + 30
        progress = client.get(job + "/progress").json()
        while not progress["finished"] and time.monotonic() < deadline:
            time.sleep(0.05)
            progress = client.get(job + "/progress").json()
        assert progress == {"total": 2, "done": 2, "ok": 2, "failed": 0, "finished": True,
                            "error": None}
        assert manager.store.held_count() == 2
        assert 'id="bulk-progress"' in client.get(job).text
        again = client.post("/quarantine/bulk/confirm", data={"csrf_token": csrf_of(plan),
                                                              "plan": plan_id.group(1)})
        assert again.status_code == 404

    def test_a_misspelled_search_key_is_refused_not_everything(
            self, client: TestClient, manager: Manager) -> None:
        log_in(client)
        page = client.get("/quarantine/search")
        r = client.post("/quarantine/bulk", data={"csrf_token": csrf_of(page.text),
                                                  "search": "subjectFilterValu=Invoice",
                                                  "action": "delete"})
        assert r.status_code == 400 and "subjectFilterValu" in r.text
        assert "dry-run-count" not in r.text and manager.store.held_count() == 4

    def test_read_only_may_not_bulk(self, client: TestClient) -> None:
        log_in(client, "rita")
        page = client.get("/quarantine/search")
        assert 'id="bulk-form"' not in page.text
        r = client.post("/quarantine/bulk", data={"csrf_token": csrf_of(page.text),
                                                  "search": "", "action": "release"})
        assert r.status_code == 403

    def test_custom_role_bulk_covers_only_granted(self, client: TestClient) -> None:
        log_in(client, "harry")
        assert mids(self.dry_run(client, "", "release")) == [3]

    def test_bad_options_are_refused_before_the_dry_run(self, client: TestClient) -> None:
        log_in(client)
        page = client.get("/quarantine/search")
        for extra, field in (({"action": "delay", "delay": "3d"}, "delay"),
                             ({"action": "copy", "address": "not an address"}, "address"),
                             ({"action": "move", "quarantine": "Policy"}, "target"),
                             ({"action": "explode"}, "action")):
            r = client.post("/quarantine/bulk", data={"csrf_token": csrf_of(page.text),
                                                      "search": "", **extra})
            assert r.status_code == 400 and field in r.text, (extra, r.text)


class TestMessage:
    def test_page_shows_everything_escaped(self, client: TestClient) -> None:
        log_in(client)
        page = client.get("/quarantine/messages/4")
        assert page.status_code == 200
        text = page.text
        assert "<script>alert" not in text and "<svg onload" not in text
        assert "&lt;svg onload=alert(2)&gt;.exe" in text
        assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in text   # the reason
        assert "&lt;b&gt;bold&lt;/b&gt;\\x07" in text                   # a header
        assert re.search(r"first-half x+ +second-half", text)             # unfolded
        assert "plain &lt;b&gt;text&lt;/b&gt;" in text                  # the text part
        assert 'sandbox=""' in text and 'id="load-remote"' in text
        assert "1 remote image blocked" in text
        assert "gw1.example.com" in text and 'id="env-gateway-mid">42<' in text
        assert ">view<" in text  # the history holds this very view

    def test_preview_frame_has_its_own_policy(self, client: TestClient) -> None:
        log_in(client)
        r = client.get("/quarantine/messages/4/preview")
        csp = r.headers["content-security-policy"]
        assert csp.startswith("default-src 'none'; img-src data:;") and "sandbox" in csp
        assert r.headers["x-frame-options"] == "SAMEORIGIN"
        assert "<script" not in r.text and "127.0.0.1:9" not in r.text
        asked = client.get("/quarantine/messages/4/preview?remote=1")
        assert "img-src data: http://127.0.0.1:9;" in asked.headers["content-security-policy"]
        assert 'src="http://127.0.0.1:9/x.png"' in asked.text
        page = client.get("/quarantine/messages/4")
        assert page.headers["x-frame-options"] == "DENY"
        assert client.get("/quarantine/messages/4/preview?remote=2").status_code == 400

    def test_release_from_the_page(self, client: TestClient, manager: Manager) -> None:
        log_in(client, "oscar")
        page = client.get("/quarantine/messages/1")
        r = client.post("/quarantine/messages/1/act", data={
            "csrf_token": csrf_of(page.text), "action": "release", "quarantine": ""})
        assert r.status_code == 200 and 'id="action-result"' in r.text
        assert "MID 1 released from Policy." in r.text
        assert manager.settler.settled[0][:2] == (1, "released")
        assert 'id="not-held"' in r.text

    def test_an_action_without_csrf_is_refused(self, client: TestClient,
                                               manager: Manager) -> None:
        log_in(client)
        r = client.post("/quarantine/messages/1/act", data={"action": "release"})
        assert r.status_code == 403 and manager.store.held_count() == 4

    def test_custom_role_cannot_see_or_act_outside_its_quarantines(
            self, client: TestClient, manager: Manager) -> None:
        log_in(client, "harry")
        assert client.get("/quarantine/messages/3").status_code == 200
        assert client.get("/quarantine/messages/1").status_code == 403
        assert client.get("/quarantine/messages/1/preview").status_code == 403
        page = client.get("/quarantine/messages/3")
        r = client.post("/quarantine/messages/1/act", data={
            "csrf_token": csrf_of(page.text), "action": "release"})
        assert r.status_code == 403 and manager.store.held_count() == 4
        r = client.post("/quarantine/messages/1/act", data={
            "csrf_token": csrf_of(page.text), "action": "release", "quarantine": "Policy"})
        assert r.status_code == 403 and manager.store.held_count() == 4

    def test_download_is_for_admin_and_operator(self, client: TestClient) -> None:
        log_in(client, "hanna")
        assert 'id="download"' not in client.get("/quarantine/messages/1").text
        assert client.get("/quarantine/messages/1/download").status_code == 403
        log_in(client, "oscar")
        r = client.get("/quarantine/messages/1/download")
        assert r.status_code == 200 and r.headers["content-type"] == "message/rfc822"
        assert b"Subject: Quarterly report" in r.content
        assert 'filename="pvoq-1.eml"' in r.headers["content-disposition"]

    @pytest.mark.parametrize("path", ["/quarantine/messages/0", "/quarantine/messages/x",
                                      f"/quarantine/messages/{2**63}",
                                      "/quarantine/messages/1?foo=1"])
    def test_bad_mids_and_parameters_are_4xx(self, client: TestClient, path: str) -> None:
        log_in(client)
        assert 400 <= client.get(path).status_code < 500

    def test_unknown_mid_is_404(self, client: TestClient) -> None:
        log_in(client)
        assert client.get("/quarantine/messages/999").status_code == 404


def test_a_gateway_keeping_no_local_quarantines_says_so_and_serves_them_once_it_does(
        manager: Manager) -> None:
    """The console is built once; a gateway switched to local mode afterwards (`pvo
    disable`) serves its quarantine pages without a restart."""
    local: dict[str, QuarantineService | None] = {"service": None}
    ctx = dataclasses.replace(manager.ctx, role="gateway", hostname="gw.example.com",
                              service=None, local_service=lambda: local["service"])
    with TestClient(build_app(ctx), base_url="http://127.0.0.1") as client:
        log_in(client)
        page = client.get("/quarantine/search")
        assert page.status_code == 404
        assert "gw.example.com keeps no local quarantines: it is in centralized mode" \
            in page.text
        assert client.get("/quarantine/messages/1").status_code == 404
        local["service"] = manager.ctx.service  # `pvo disable`: the local store is built
        page = client.get("/quarantine/search")
        assert page.status_code == 200
        assert sorted(mids(page.text)) == [1, 2, 3, 4]
        assert client.get("/quarantine/messages/1").status_code == 200
