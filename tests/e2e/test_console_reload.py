"""`<web>` and `<api>` on reload, against a running manager: the console moves to a new port
at once, a bad certificate is refused with the field named while the old server runs on,
plain HTTP only when configured, and a new `<api>` answers without a restart, its token
acting with its user's role."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from consolesetup import console_deployment

from pvoq.testing.localdeploy import Deployment, free_port

API = "/api/v2.0/quarantine/messages"


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Deployment]:
    dep = console_deployment(tmp_path / "deploy")
    try:
        dep.start_manager()
        yield dep
    finally:
        dep.stop_all()


def reachable(url: str, ca: Path | None) -> bool:
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else False
    try:
        with httpx.Client(verify=verify, timeout=10) as c:
            return c.get(url + "/login").status_code == 200
    except httpx.TransportError:
        return False


def test_web_and_api_changes_take_effect_on_reload(manager: Deployment) -> None:
    config = manager.manager_config
    old_url = manager.console_url("manager")
    assert reachable(old_url, manager.ca_file)

    new_port = free_port()
    text = config.read_text()
    config.write_text(re.sub(r"(<web>.*?<port>)\d+(</port>)", rf"\g<1>{new_port}\g<2>", text,
                             flags=re.S))
    assert "reloaded" in manager.admin(config, "reload")["text"]
    new_url = f"https://127.0.0.1:{new_port}"
    assert reachable(new_url, manager.ca_file)
    assert not reachable(old_url, manager.ca_file)

    good = config.read_text()
    (config.parent / "certs" / "broken.pem").write_text("not a certificate\n")
    config.write_text(good.replace("certs/web.pem", "certs/broken.pem"))
    refused = manager.admin_error(config, "reload")
    assert "config.web" in refused and "refused" in refused
    assert reachable(new_url, manager.ca_file)        # the old server runs on

    plain_port = free_port()
    config.write_text(re.sub(
        r"<web>.*?</web>", f"<web><port>{plain_port}</port><plain_http>true</plain_http></web>",
        good, flags=re.S))
    manager.admin(config, "reload")
    plain = f"http://127.0.0.1:{plain_port}"
    assert reachable(plain, None)
    api_port = free_port()
    config.write_text(config.read_text().replace("</config>", f"""
  <api>
    <port>{api_port}</port>
    <token><value>tok-alice</value><user>alice</user><role>read-only</role></token>
    <token><value>tok-rita</value><user>rita</user><role>admin</role></token>
    <token><value>tok-zed</value><user>zed</user><role>operator</role></token>
  </api>
</config>"""))
    manager.admin(config, "reload")                   # no restart
    for base in (f"http://127.0.0.1:{api_port}", plain):   # its own port, and the console's
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.get(API, headers={"Authorization": "Bearer tok-zed"}).status_code == 200
            verify = c.get("/api/v2.0/audit/verify",
                           headers={"Authorization": "Bearer tok-alice"})
            assert verify.status_code == 200           # alice is an admin user: her role
            denied = c.get("/api/v2.0/audit/verify",
                           headers={"Authorization": "Bearer tok-rita"})
            assert denied.status_code == 403            # rita is read-only, whatever <token> says
            assert c.get(API).status_code == 401
    logs = "\n".join(manager.mail_logs("manager"))
    assert "Configuration reload refused" in logs and "REST API listening" in logs
