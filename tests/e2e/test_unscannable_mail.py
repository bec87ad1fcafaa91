"""Mail that could wedge the gateway: a message nested beyond the MIME limits gets the
unscannable action at once (never endless retries) while clean mail flows, and a
message waiting for a scan retry is seen and removed by the operator commands."""

from __future__ import annotations

import re
import smtplib
import time

from pvoq.scan.antivirus import EICAR
from pvoq.testing.localdeploy import Deployment, free_port, wait_for


def raw_send(dep: Deployment, wire: bytes, *, to: str = "bob@example.com") -> None:
    with smtplib.SMTP(dep.ip, dep.ports["gateway_smtp"], timeout=30) as smtp:
        smtp.sendmail("alice@sender.example", [to], wire)


def multipart_nest(depth: int, inner: bytes) -> bytes:
    body = inner
    for i in range(depth):
        body = (f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
                + body + f"\r\n--b{i}--\r\n".encode())
    return (b"From: alice@sender.example\r\nTo: bob@example.com\r\n"
            b"Subject: deep multipart\r\n" + body)


def rfc822_nest(depth: int) -> bytes:
    body = b"Subject: innermost\r\n\r\nhello\r\n"
    for _ in range(depth):
        body = b"Content-Type: message/rfc822\r\n\r\n" + body
    return (b"From: alice@sender.example\r\nTo: bob@example.com\r\n"
            b"Subject: deep rfc822\r\n" + body)


def gateway_lines(dep: Deployment, pattern: str) -> list[str]:
    return [line for line in dep.mail_logs("gateway") if re.search(pattern, line)]


def configure(dep: Deployment, *, antivirus: str = "", retry_s: float = 0.3) -> None:
    path = dep.gateway_config
    text = path.read_text()
    text = re.sub(r"<unscannable_action>\w+</unscannable_action>",
                  "<unscannable_action>quarantine</unscannable_action>", text)
    text = text.replace("<antivirus>\n", f"<antivirus>\n{antivirus}", 1)
    text = text.replace("</config>", f"  <scan_pipeline>\n    <retry_seconds>{retry_s:g}"
                        "</retry_seconds>\n  </scan_pipeline>\n</config>")
    path.write_text(text)


def test_deep_mime_gets_the_unscannable_action_and_clean_mail_flows(
        deployment: Deployment) -> None:
    configure(deployment)
    deployment.start()
    eicar_part = (b"Content-Type: application/octet-stream\r\n"
                  b"Content-Disposition: attachment; filename=eicar.com\r\n\r\n" + EICAR)
    raw_send(deployment, multipart_nest(1000, eicar_part))
    raw_send(deployment, rfc822_nest(2000))
    deployment.send(subject="clean", body="still flows")
    caught = wait_for("both deep messages in quarantine",
                      lambda: [m for m in deployment.quarantined()] if len(
                          deployment.quarantined()) == 2 else None)
    (delivered,) = wait_for("the clean message", deployment.delivered)
    assert b"still flows" in delivered[1]
    assert sorted(m["subject"] for m in caught) == ["deep multipart", "deep rfc822"]
    assert {(q["quarantine"], q["reason"]) for m in caught for q in m["quarantines"]} == {
        ("Virus", "a/v verdict:UNSCANNABLE")}
    assert len(gateway_lines(deployment, r"MID \d+ unscannable: MIME nesting deeper than "
                                         r"50 levels$")) == 2
    assert len(gateway_lines(deployment, r"MID \d+ antivirus unscannable$")) == 2
    assert gateway_lines(deployment, "temporary failure|application fault") == []
    assert deployment.admin(deployment.gateway_config, "workqueue.status")["data"][
        "messages"] == 0


def test_a_message_waiting_for_a_retry_is_listed_and_deleted(
        deployment: Deployment) -> None:
    closed = free_port()  # clamd "down": nobody listens there
    configure(deployment, antivirus=f"    <clamd_host>127.0.0.1</clamd_host>\n"
                                    f"    <clamd_port>{closed}</clamd_port>\n", retry_s=60)
    deployment.start()
    deployment.send(subject="waits", body="for the scanner", to="carol@example.com")
    (line,) = wait_for("the temporary failure",
                       lambda: gateway_lines(deployment, r"temporary failure in antivirus"))
    mid = int(re.search(r"MID (\d+)", line).group(1))  # type: ignore[union-attr]
    gw = deployment.gateway_config
    shown = deployment.admin(gw, "showrecipients", {"by": "all"})["data"]
    assert shown["total"] == 1
    (message,) = shown["messages"]
    assert message["mid"] == mid and message["subject"] == "waits"
    assert [r["address"] for r in message["recipients"]] == ["carol@example.com"]
    assert message["recipients"][0]["host"] == "(work queue)"
    assert deployment.admin(gw, "workqueue.status")["data"]["messages"] == 1
    assert deployment.admin(gw, "status")["data"]["messages_in_work_queue"] == 1
    by_sender = deployment.admin(gw, "showrecipients",
                                 {"by": "sender", "value": "alice@sender.example"})["data"]
    assert by_sender["total"] == 1
    deleted = deployment.admin(gw, "deleterecipients", {"by": "all"})
    assert deleted["data"]["deleted"] == 1
    assert deployment.spooled("gateway") == []
    assert deployment.admin(gw, "showrecipients", {"by": "all"})["data"]["total"] == 0
    assert deployment.admin(gw, "workqueue.status")["data"]["messages"] == 0
    assert gateway_lines(deployment, rf"MID {mid} RID \[0\] deleted by deleterecipients")
    time.sleep(0.5)
    assert deployment.delivered() == []
