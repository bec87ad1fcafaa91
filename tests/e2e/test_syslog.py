"""A real gateway pushes mail_logs to a syslog server (a socket server in the test) over TCP
and UDP, as RFC 5424 messages; with TCP, a server that is down at first gets the lines once
it is up, and mail flows all the while."""

from __future__ import annotations

import pytest

from pvoq.testing.localdeploy import GATEWAY, Deployment, free_port, wait_for
from pvoq.testing.syslogd import Message, SyslogReceiver


def push_to(deployment: Deployment, protocol: str, port: int) -> None:
    config = deployment.gateway_config
    config.write_text(config.read_text().replace("</config>", f"""\
  <logs>
    <log>
      <name>mail_logs</name>
      <syslog><host>127.0.0.1</host><port>{port}</port><protocol>{protocol}</protocol>
        <facility>local4</facility></syslog>
    </log>
  </logs>
</config>"""))


def start_gateway(deployment: Deployment) -> None:
    deployment.start_sink()
    deployment.start_gateway()


def subject_lines(messages: list[Message], subject: str) -> list[Message]:
    return [m for m in messages if f'Subject "{subject}"' in m.text]


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_lines_reach_the_syslog_server(deployment: Deployment, protocol: str) -> None:
    receiver = SyslogReceiver(protocol)
    try:
        push_to(deployment, protocol, receiver.port)
        start_gateway(deployment)
        deployment.send(subject=f"over {protocol}", body="hello")
        wait_for("delivery", deployment.delivered)
        found = receiver.wait_for(lambda m: bool(subject_lines(m, f"over {protocol}")))
        line = subject_lines(found, f"over {protocol}")[0]
        assert (line.facility, line.severity) == (20, 6)  # local4, informational
        assert (line.app_name, line.msgid, line.hostname) == ("pvoq", "mail_logs", GATEWAY)
        assert line.structured_data == "-"
        assert line.text.startswith("Info: MID ")
        assert receiver.bad_frames == []
        # the same lines as the file, in its order
        file_texts = [x.split(" ", 5)[5] for x in deployment.mail_logs("gateway")]
        pushed = [m.text for m in found]
        mine = [x for x in file_texts if x in pushed]
        assert pushed == mine[:len(pushed)]
    finally:
        receiver.close()


def test_tcp_server_down_then_up(deployment: Deployment) -> None:
    port = free_port()
    push_to(deployment, "tcp", port)
    start_gateway(deployment)
    deployment.send(subject="while down", body="hello")
    wait_for("delivery while the syslog server is down", deployment.delivered)
    wait_for("the push failure in mail_logs", lambda: any(
        "Syslog push to tcp://127.0.0.1" in x and "failed" in x
        for x in deployment.mail_logs("gateway")))
    receiver = SyslogReceiver("tcp", port)
    try:
        found = receiver.wait_for(lambda m: bool(subject_lines(m, "while down")), timeout_s=90)
        assert subject_lines(found, "while down")[0].msgid == "mail_logs"
        deployment.send(subject="once up", body="hello")
        receiver.wait_for(lambda m: bool(subject_lines(m, "once up")))
        state = deployment.admin(deployment.gateway_config, "logconfig")["data"]["logs"][0]
        assert state["syslog_state"]["connected"] is True
    finally:
        receiver.close()
