"""A gateway in local mode: it holds Policy, Virus, Outbreak and custom quarantines itself,
operated with the same `pvoq cli quarantine` commands, and delivers what it releases."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from email import message_from_bytes
from typing import Any

import httpx
import pytest

from pvoq.scan.pipeline import EICAR
from pvoq.testing.localdeploy import OUTBREAK_HOST, Deployment, free_port, wait_for
from pvoq.testing.trace import relayed

CUSTOM = """\
  <policy_quarantines>
    <quarantine>Legal Hold</quarantine>
  </policy_quarantines>
  <quarantines>
    <quarantine>
      <name>Legal Hold</name>
      <retention>30</retention>
      <retention_unit>days</retention_unit>
      <default_action>release</default_action>
    </quarantine>
  </quarantines>
</config>"""
LEGAL_FILTER = """<content_filters>
    <content_filter>
      <name>lawsuit_subject</name>
      <header>Subject</header>
      <regex>(?i)\\blawsuit\\b</regex>
      <quarantine>Legal Hold</quarantine>
    </content_filter>
"""


def make_local(dep: Deployment, *, custom: bool = False) -> None:
    """The gateway's `<pvo_quarantines><enabled>` set to false (and a custom quarantine)."""
    path = dep.gateway_config
    text = path.read_text().replace("<enabled>true</enabled>", "<enabled>false</enabled>", 1)
    if custom:
        text = text.replace("<content_filters>\n", LEGAL_FILTER, 1)
        text = text.replace("</config>", CUSTOM)
    path.write_text(text)


def cli(dep: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(dep.gateway_config),
                           *args], capture_output=True, text=True, timeout=60)


def held(dep: Deployment) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = dep.admin(dep.gateway_config,
                                           "quarantine.list")["data"]["messages"]
    return rows


def held_in(rows: list[dict[str, Any]], quarantine: str) -> dict[str, Any]:
    return next(r for r in rows if r["quarantines"][0]["quarantine"] == quarantine)


@pytest.fixture
def local(deployment: Deployment) -> Deployment:
    """The sink and a gateway in local mode with a custom quarantine; no manager at all."""
    make_local(deployment, custom=True)
    deployment.start_sink()
    deployment.start_gateway()
    return deployment


class TestLocalQuarantines:
    def test_policy_virus_outbreak_and_custom_held_here_and_a_release_delivered(
            self, local: Deployment) -> None:
        local.send(subject="hello", body="clean")
        sent = local.send(subject="Confidential numbers", body="policy\n.leading dot\n")
        local.send(subject="invoice", body="see attachment", attachment=("a.com", EICAR))
        local.send(subject="parcel", body=f"http://www.{OUTBREAK_HOST}/x")
        local.send(subject="the lawsuit", body="keep it")
        rows = wait_for("four held locally", lambda: (r := held(local)) and len(r) == 4 and r)
        assert {r["quarantines"][0]["quarantine"] for r in rows} == {
            "Policy", "Virus", "Outbreak", "Legal Hold"}
        assert all(r["origin_host"] == "gw1.pvoq.test" for r in rows)
        policy = held_in(rows, "Policy")
        assert policy["quarantines"][0]["reason"] == "content filter:confidential_subject"
        assert held_in(rows, "Virus")["subject"] == "invoice"
        assert held_in(rows, "Outbreak")["quarantines"][0]["reason"].startswith("VOF rule:")
        assert held_in(rows, "Legal Hold")["quarantines"][0]["reason"] == (
            "content filter:lawsuit_subject")
        delivered = wait_for("clean mail", local.delivered)
        assert [message_from_bytes(c)["Subject"] for _, c in delivered] == ["hello"]
        log = "\n".join(local.mail_logs("gateway"))
        mid = policy["id"]
        assert (f'Info: MID {mid} quarantined to "Policy" (content filter:confidential_subject)'
                in log)
        assert "enqueued for transfer to centralized quarantine" not in log
        assert not [e for e in local.spooled() if e.mid in {r["id"] for r in rows}]

        # the same CLI as on the manager releases it; the gateway itself delivers it
        released = cli(local, "quarantine", "release", str(mid))
        assert released.returncode == 0, released.stderr
        assert f"MID {mid} released from Policy" in released.stdout
        arrived = wait_for("the release at the sink", lambda: (d := local.delivered()) and
                           len(d) == 2 and d)
        envelope, content = arrived[1]
        assert envelope["rcpt_tos"] == ["bob@example.com"]
        assert relayed(content) == sent
        log = "\n".join(local.mail_logs("gateway"))
        assert re.search(rf'Info: MID {mid} released from quarantine "Policy" \(manual\) t=\d+',
                         log)
        assert f"Info: MID {mid} released from all quarantines" in log
        new = re.search(rf"MID {mid} rewritten to MID (\d+) by release from local quarantine",
                        log)
        assert new is not None
        assert re.search(rf"MID {new.group(1)} queued for delivery", log)
        assert len(held(local)) == 3

        status = cli(local, "pvo", "status")
        assert status.returncode == 0, status.stderr
        assert status.stdout.startswith("PVO quarantines: local\n")
        shown = cli(local, "status")
        assert shown.returncode == 0, shown.stderr
        assert re.search(r"Messages In Quarantine\n\s+Policy, Virus and Outbreak\s+3\n",
                         shown.stdout), shown.stdout

    def test_held_messages_survive_a_restart_and_sigkill(self, local: Deployment) -> None:
        local.send(subject="confidential", body="one")
        local.send(subject="the lawsuit", body="two")
        wait_for("two held", lambda: len(held(local)) == 2)
        local.stop("gateway", sig=signal.SIGKILL)
        local.start_gateway()
        rows = held(local)
        assert sorted(r["quarantines"][0]["quarantine"] for r in rows) == ["Legal Hold",
                                                                           "Policy"]
        deleted = cli(local, "quarantine", "delete", str(held_in(rows, "Policy")["id"]))
        assert deleted.returncode == 0, deleted.stderr
        assert [r["quarantines"][0]["quarantine"] for r in held(local)] == ["Legal Hold"]
        assert local.delivered() == []


def test_the_rest_api_releases_from_the_local_quarantines(deployment: Deployment) -> None:
    """The manager's REST API v2.0, served by the gateway over its own quarantines."""
    make_local(deployment)
    port = free_port()
    path = deployment.gateway_config
    path.write_text(path.read_text().replace("</config>", f"""
  <api>
    <port>{port}</port>
    <token><value>s3cret</value><user>alice</user><role>admin</role></token>
  </api>
</config>"""))
    deployment.start_sink()
    deployment.start_gateway()
    deployment.send(subject="confidential api test", body="x")
    wait_for("held locally", lambda: held(deployment))
    api = "/api/v2.0/quarantine/messages"
    with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                      headers={"Authorization": "Bearer s3cret"}, timeout=30) as c:
        found = c.get(api, params={"subjectFilterBy": "contains",
                                   "subjectFilterValue": "api test"}).json()
        assert found["meta"]["totalCount"] == 1
        assert found["data"][0]["attributes"]["esaHostName"] == "gw1.pvoq.test"
        mid = found["data"][0]["mid"]
        released = c.post(api, json={"action": "release", "quarantineType": "pvo",
                                     "quarantineName": "Policy", "mids": [mid]})
        assert released.json()["data"]["mids"] == [mid]
    _, message = wait_for("delivered", deployment.delivered)[0]
    assert b"confidential api test" in message
