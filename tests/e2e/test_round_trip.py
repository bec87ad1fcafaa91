"""One message's whole journey through real processes, and the three verdicts."""

from __future__ import annotations

import re
from email import message_from_bytes

from pvoq.scan.pipeline import EICAR
from pvoq.testing.localdeploy import OUTBREAK_HOST, Deployment, wait_for
from pvoq.testing.trace import relayed


def _by_reason(rows: list[dict], quarantine: str) -> dict:
    return next(m for m in rows if any(q["quarantine"] == quarantine for q in m["quarantines"]))


class TestRoundTrip:
    def test_policy_message_is_quarantined_released_and_delivered_intact(
            self, running: Deployment) -> None:
        """SMTP in → manager quarantine → release → downstream, with the body unchanged."""
        body = "Quarterly figures.\n.leading dot line\nUnicode-free end.\n"
        sent = running.send(subject="Confidential numbers", body=body)
        rows = wait_for("the message in quarantine", running.quarantined)
        assert len(rows) == 1
        record = rows[0]
        assert record["quarantines"][0]["quarantine"] == "Policy"
        assert record["quarantines"][0]["reason"] == "content filter:confidential_subject"
        assert record["origin_host"] == "gw1.pvoq.test"
        assert running.delivered() == []

        running.admin(running.manager_config, "quarantine.release", {"mid": record["id"]})
        envelope, content = wait_for("the release at the sink", running.delivered)[0]
        assert envelope["rcpt_tos"] == ["bob@example.com"]
        assert envelope["mail_from"] == "alice@sender.example"
        assert relayed(content) == sent  # the gateway's Received: line once, the rest intact
        assert running.quarantined() == []

    def test_each_verdict_reaches_its_quarantine_and_clean_mail_goes_downstream(
            self, running: Deployment) -> None:
        """Clean mail is delivered; policy, EICAR and outbreak mail land in their quarantines."""
        running.send(subject="hello", body="clean")
        running.send(subject="confidential", body="policy")
        running.send(subject="invoice", body="see attachment", attachment=("a.com", EICAR))
        running.send(subject="parcel", body=f"http://www.{OUTBREAK_HOST}/x")
        rows = wait_for("three quarantined", lambda: (r := running.quarantined()) and
                        len(r) == 3 and r)
        assert {q["quarantine"] for m in rows for q in m["quarantines"]} == {
            "Policy", "Virus", "Outbreak"}
        assert _by_reason(rows, "Virus")["subject"] == "invoice"
        assert _by_reason(rows, "Outbreak")["quarantines"][0]["reason"].startswith("VOF rule:")
        delivered = wait_for("clean mail", running.delivered)
        assert [message_from_bytes(c)["Subject"] for _, c in delivered] == ["hello"]

    def test_deleted_message_is_never_delivered(self, running: Deployment) -> None:
        """A message deleted from its quarantine is gone and never reaches the sink."""
        running.send(subject="confidential", body="to delete")
        running.send(subject="plain", body="marker sent after")
        record = wait_for("quarantined", running.quarantined)[0]
        running.admin(running.manager_config, "quarantine.delete", {"mid": record["id"]})
        wait_for("the clean marker", running.delivered)
        assert running.quarantined() == []
        shown = running.admin(running.manager_config, "quarantine.show", {"mid": record["id"]})
        assert shown["data"]["state"] == "deleted"
        assert [message_from_bytes(c)["Subject"] for _, c in running.delivered()] == ["plain"]

    def test_mail_logs_show_the_cpq_lines_of_the_seed(self, running: Deployment) -> None:
        """Both appliances log CPQ connections and deliveries in AsyncOS form."""
        running.send(subject="confidential", body="x")
        record = wait_for("quarantined", running.quarantined)[0]
        running.admin(running.manager_config, "quarantine.release", {"mid": record["id"]})
        wait_for("delivered", running.delivered)
        gw = "\n".join(running.mail_logs("gateway"))
        mgr = "\n".join(running.mail_logs("manager"))
        port = running.ports["manager_cpq"]
        stamp = r"^\w{3} \w{3} {1,2}\d{1,2} \d\d:\d\d:\d\d \d{4} Info: "
        assert re.search(stamp + rf"New SMTP DCID \d+ interface 127\.0\.0\.1 address "
                         rf"127\.0\.0\.1 port {port}$", gw, re.M)
        assert re.search(stamp + r"DCID \d+ TLS success protocol TLSv1\.3 cipher \S+ "
                         r"the\.cpq\.host$", gw, re.M)
        assert re.search(stamp + r"Delivery start DCID \d+ MID \d+ to RID \[0\] to "
                         r"Centralized Policy Quarantine$", gw, re.M)
        assert re.search(stamp + r"Message done DCID \d+ MID \d+ to RID \[0\] "
                         r"\(centralized policy quarantine\)$", gw, re.M)
        assert re.search(stamp + r"DCID \d+ close$", gw, re.M)
        assert re.search(stamp + r'MID \d+ quarantined to "Policy" \(content '
                         r'filter:confidential_subject\)$', gw, re.M)
        assert re.search(stamp + r"New CPQ ICID \d+ interface Management \(127\.0\.0\.1\) "
                         r"address 127\.0\.0\.1 reverse dns host unknown verified no$",
                         mgr, re.M)
        assert re.search(stamp + r"New CPQ ICID \d+ interface Incoming Mail", gw, re.M)
        assert re.search(stamp + r"MID \d+ received from the SMA 127\.0\.0\.1 \(MID "
                         r"originally \d+\) on release from central quarantine$", gw, re.M)
