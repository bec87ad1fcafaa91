"""The REST API served by a running manager process: search and release over real HTTP,
the release delivered through the gateway."""

from __future__ import annotations

import httpx

from pvoq.testing.localdeploy import Deployment, free_port, wait_for

API = "/api/v2.0/quarantine/messages"


class TestManagerApi:
    def test_release_through_the_api(self, deployment: Deployment) -> None:
        """A message found with the API and released with it reaches the downstream server."""
        port = free_port()
        config = deployment.manager_config
        config.write_text(config.read_text().replace("</config>", f"""
  <api>
    <port>{port}</port>
    <token><value>s3cret</value><user>alice</user><role>admin</role></token>
  </api>
</config>"""))
        deployment.start()
        deployment.send(subject="confidential api test", body="x")
        wait_for("quarantined", deployment.quarantined)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                          headers={"Authorization": "Bearer s3cret"}, timeout=30) as c:
            found = c.get(API, params={"subjectFilterBy": "contains",
                                       "subjectFilterValue": "api test"}).json()
            assert found["meta"]["totalCount"] == 1
            mid = found["data"][0]["mid"]
            released = c.post(API, json={"action": "release", "quarantineType": "pvo",
                                         "quarantineName": "Policy", "mids": [mid]})
            assert released.json()["data"]["mids"] == [mid]
        envelope, message = wait_for("delivered", deployment.delivered)[0]
        assert b"confidential api test" in message
        assert any(f'MID {mid} released from quarantine "Policy" (manual)' in line
                   for line in deployment.mail_logs("manager"))
