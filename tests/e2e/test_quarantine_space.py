"""Quarantine space on a running manager: the overflow rule frees the oldest message, and
when nothing may be freed the manager answers CPQ with a temporary error, the gateway keeps
the message and delivers it once there is room (nothing is lost)."""

from __future__ import annotations

import re

from pvoq.testing.localdeploy import Deployment, wait_for

BIG = "x" * 1500


def limit_space(deployment: Deployment, *, free_up_space: bool) -> None:
    """Give the manager a quota of about two kilobytes and Policy's overflow setting."""
    config = deployment.manager_config
    flag = "true" if free_up_space else "false"
    config.write_text(config.read_text().replace("</config>", f"""
  <quarantines>
    <quarantine>
      <name>Policy</name>
      <retention>10</retention>
      <retention_unit>days</retention_unit>
      <default_action>delete</default_action>
      <free_up_space>{flag}</free_up_space>
    </quarantine>
  </quarantines>
  <quarantine_store>
    <max_size_mb>0.002</max_size_mb>
  </quarantine_store>
</config>"""))


class TestQuarantineSpace:
    def test_overflow_deletes_the_oldest(self, deployment: Deployment) -> None:
        """With free-up-space on, a new message makes room by deleting the oldest one."""
        limit_space(deployment, free_up_space=True)
        deployment.start()
        deployment.send(subject="confidential first", body=BIG)
        first = wait_for("first quarantined", deployment.quarantined)[0]["id"]
        deployment.send(subject="confidential second", body=BIG)
        wait_for("second replaces first", lambda: [m["subject"] for m in
                                                   deployment.quarantined()]
                 == ["confidential second"])
        pattern = re.compile(rf'MID {first} deleted from quarantine "Policy" '
                             r"\(queue full\) t=\d+")
        assert any(pattern.search(line) for line in deployment.mail_logs("manager"))

    def test_full_manager_makes_the_gateway_keep_mail(self, deployment: Deployment) -> None:
        """Full with nothing free-able: 452 to the gateway, which delivers after a delete."""
        limit_space(deployment, free_up_space=False)
        deployment.start()
        deployment.send(subject="confidential first", body=BIG)
        first = wait_for("first quarantined", deployment.quarantined)[0]["id"]
        deployment.send(subject="confidential second", body=BIG)
        wait_for("the manager refusing for space", lambda: any(
            "quarantine space full" in line for line in deployment.mail_logs("manager")))
        assert [m["subject"] for m in deployment.quarantined()] == ["confidential first"]
        assert any("452" in line for line in deployment.mail_logs("gateway"))
        deployment.admin(deployment.manager_config, "quarantine.delete", {"mid": first})
        wait_for("second delivered once there is room", lambda: [
            m["subject"] for m in deployment.quarantined()] == ["confidential second"])
