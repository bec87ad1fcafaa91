"""A user's own REST API tokens (`pvoq cli user token add`): each acts with its user's
role as it is now, and ends with a revocation or the user's deletion."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "quarantine"))
from qhelpers import RecordingSettler

from pvoq.config.model import ApiToken
from pvoq.quarantine.service import QuarantineService
from pvoq.quarantine.settings import merge_settings
from pvoq.quarantine.store import QuarantineStore
from pvoq.users import UserStore
from pvoq.web.api import create_app

SETTINGS = merge_settings([])
TOKENS = (ApiToken("t-admin", "alice", "admin"),)

VERIFY = "/api/v2.0/audit/verify"


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = QuarantineStore(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "bodies",
                            settings=SETTINGS)
    store.sync_quarantines(SETTINGS)
    service = QuarantineService(store, RecordingSettler(store), lambda line: None)
    users = UserStore(tmp_path / "users.json")

    def owner(secret: str):  # type: ignore[no-untyped-def]
        account = users.token_owner(secret)
        return (account.name, account.role, account.quarantines) if account else None

    app = create_app(service, TOKENS, token_owner=owner)
    yield app, users
    store.close()


def get(app, token: str, path: str = VERIFY) -> httpx.Response:  # type: ignore[no-untyped-def]
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api",
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            return await c.get(path)
    return asyncio.run(run())


def test_a_user_token_acts_with_its_users_role_as_it_is_now(setup) -> None:  # type: ignore[no-untyped-def]
    app, users = setup
    users.add("dana", "long enough pw", "read-only")
    _, secret = users.add_token("dana", "monitoring")
    assert get(app, secret).status_code == 403          # known, but read-only
    assert get(app, secret, "/api/v2.0/quarantine/messages").status_code == 200
    users.set_role("dana", "admin")
    answer = get(app, secret)
    assert answer.status_code == 200 and answer.json()["data"]["ok"] is True


def test_a_revoked_token_or_a_deleted_user_is_unknown(setup) -> None:  # type: ignore[no-untyped-def]
    app, users = setup
    users.add("erin", "long enough pw", "admin")
    first, one = users.add_token("erin")
    _, two = users.add_token("erin", "second")
    users.revoke_token("erin", first["id"])
    assert get(app, one).status_code == 401
    assert get(app, two).status_code == 200
    users.delete("erin")
    assert get(app, two).status_code == 401
    assert get(app, "pvoq_" + "x" * 43).status_code == 401
