"""A message of a few megabytes (over the size above which it is read, scanned and sent
in pieces) through real processes: quarantined, released, delivered byte for byte."""

from __future__ import annotations

import os
import smtplib
import time
from email.message import EmailMessage

from pvoq.scan.antivirus import EICAR
from pvoq.testing.localdeploy import Deployment, wait_for
from pvoq.testing.trace import relayed

ATTACHMENT = 4_000_000  # bytes before base64: about 5.5 MB on the wire


def big_message(subject: str, payload: bytes) -> bytes:
    """Text with lines that start with dots (dot-stuffed on every hop) and *payload*."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "alice@sender.example", "bob@example.com", subject
    msg["Message-ID"] = f"<{time.time_ns()}.big@sender.example>"
    msg.set_content("Figures attached.\n.a line with a dot\n..two dots\n.\nend\n")
    msg.add_attachment(payload, maintype="application", subtype="octet-stream",
                       filename="figures.bin")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def send(dep: Deployment, wire: bytes) -> None:
    with smtplib.SMTP(dep.ip, dep.ports["gateway_smtp"], timeout=60) as smtp:
        smtp.sendmail("alice@sender.example", ["bob@example.com"], wire)


def held(dep: Deployment, query: dict[str, object]) -> list[dict[str, object]]:
    return dep.admin(dep.manager_config, "quarantine.search",
                     {"query": {"quarantines": ["Policy", "Virus"], **query}})["data"]["messages"]


class TestBigMessage:
    def test_a_big_message_is_held_released_and_delivered_byte_for_byte(
            self, running: Deployment) -> None:
        """Received in pieces into the spool, scanned part by part, sent over CPQ in
        chunks, stored and listed (its attachment's decoded size) on the manager, released
        back and delivered downstream: what arrives is what was sent, below the gateway's
        Received: line."""
        wire = big_message("confidential figures", os.urandom(ATTACHMENT))
        send(running, wire)
        rows = wait_for("the message in quarantine", running.quarantined, timeout_s=120)
        assert rows[0]["quarantines"][0]["reason"] == "content filter:confidential_subject"
        found = held(running, {"attachment_name": ["is", "figures.bin"],
                               "attachment_min_size": ATTACHMENT,
                               "attachment_max_size": ATTACHMENT})
        assert [r["id"] for r in found] == [rows[0]["id"]]

        running.admin(running.manager_config, "quarantine.release", {"mid": rows[0]["id"]})
        _, content = wait_for("the release at the sink", running.delivered, timeout_s=120)[0]
        assert relayed(content) == wire
        assert running.quarantined() == []

    def test_a_virus_deep_in_a_big_message_is_found(self, running: Deployment) -> None:
        """The built-in anti-virus check finds EICAR in a decoded part of a message it
        walks part by part, not only in the raw bytes."""
        wire = big_message("figures", os.urandom(ATTACHMENT) + EICAR)
        assert EICAR not in wire  # base64-encoded: only the decoded part has it
        send(running, wire)
        rows = wait_for("the message in quarantine", running.quarantined, timeout_s=120)
        assert rows[0]["quarantines"][0]["quarantine"] == "Virus"
        assert running.delivered() == []
