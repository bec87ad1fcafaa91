"""Expiry and early release on a running manager: the scheduler applies the default action
at the scheduled exit (logged as expired), and a manual release before it applies the
quarantine's early-release options to the delivered copy."""

from __future__ import annotations

import email
import re

from pvoq.testing.localdeploy import Deployment, wait_for


def policy_settings(deployment: Deployment, *, retention_minutes: float) -> None:
    """Policy: release by default after *retention_minutes*, with early-release options."""
    config = deployment.manager_config
    config.write_text(config.read_text().replace("</config>", f"""
  <quarantines>
    <quarantine>
      <name>Policy</name>
      <retention>{retention_minutes}</retention>
      <retention_unit>minutes</retention_unit>
      <default_action>release</default_action>
      <free_up_space>true</free_up_space>
      <early_release>
        <subject_tag>[EARLY]</subject_tag>
        <x_header>X-Inappropriate-Release-Early: True</x_header>
      </early_release>
    </quarantine>
  </quarantines>
  <quarantine_store>
    <expiry_interval_seconds>0.3</expiry_interval_seconds>
  </quarantine_store>
</config>"""))


class TestExpiry:
    def test_expired_message_is_released_as_is(self, deployment: Deployment) -> None:
        """At its scheduled exit the message is released (expired), without early tags."""
        policy_settings(deployment, retention_minutes=0.02)
        deployment.start()
        deployment.send(subject="confidential expiring", body="x")
        _, raw = wait_for("the expired message delivered", deployment.delivered)[0]
        message = email.message_from_bytes(raw)
        assert message["Subject"] == "confidential expiring"
        assert message["X-Inappropriate-Release-Early"] is None
        assert any(re.search(r'MID \d+ released from quarantine "Policy" \(expired\) t=\d+',
                             line) for line in deployment.mail_logs("manager"))

    def test_early_release_tags_the_copy(self, deployment: Deployment) -> None:
        """Released by hand before its exit, the message carries the subject tag and header."""
        policy_settings(deployment, retention_minutes=600)
        deployment.start()
        deployment.send(subject="confidential early", body="x")
        mid = wait_for("quarantined", deployment.quarantined)[0]["id"]
        deployment.admin(deployment.manager_config, "quarantine.release", {"mid": mid})
        _, raw = wait_for("the released message delivered", deployment.delivered)[0]
        message = email.message_from_bytes(raw)
        assert message["Subject"] == "[EARLY] confidential early"
        assert message["X-Inappropriate-Release-Early"] == "True"
