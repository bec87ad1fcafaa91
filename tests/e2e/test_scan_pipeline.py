"""The gateway's pipeline end to end: real clamd, temporary failures, outbreak rescans."""

from __future__ import annotations

import json
import re
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

import pytest

from pvoq.scan.antivirus import EICAR
from pvoq.testing.clamd import SIGNATURE_NAME, ClamdProcess, ClamdUnavailable
from pvoq.testing.localdeploy import Deployment, wait_for

RULES_V1 = {"version": "1", "rules": [
    {"id": "OF-PARCEL", "description": "Parcel phishing wave", "threat_level": 4,
     "urls": ["parcel-track.example/track"]},
    {"id": "OF-LOW", "description": "Low threat", "threat_level": 2, "urls": ["low.example"]},
]}


def configure_gateway(dep: Deployment, *, antivirus: str = "", outbreak: str = "") -> None:
    """Add settings to the gateway's <antivirus> and <outbreak_filters>, retry scans fast."""
    path = dep.gateway_config
    text = path.read_text()
    text = text.replace("<antivirus>\n", f"<antivirus>\n{antivirus}", 1)
    text = text.replace("<outbreak_filters>\n", f"<outbreak_filters>\n{outbreak}", 1)
    text = text.replace("</config>", "  <scan_pipeline>\n    <retry_seconds>0.3</retry_seconds>\n"
                        "  </scan_pipeline>\n</config>")
    path.write_text(text)


def gateway_lines(dep: Deployment, pattern: str) -> list[str]:
    return [line for line in dep.mail_logs("gateway") if re.search(pattern, line)]


@pytest.fixture
def clamd(tmp_path: Path) -> Iterator[ClamdProcess]:
    """A real clamd with the test's own EICAR signatures; a missing clamd fails the test."""
    proc = ClamdProcess(tmp_path / "clamd")
    try:
        proc.start()
    except ClamdUnavailable as exc:
        pytest.fail(f"a real clamd is required (Debian package clamav-daemon): {exc}")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def with_clamd(deployment: Deployment, clamd: ClamdProcess) -> Deployment:
    """The deployment, its gateway scanning with that clamd, started."""
    configure_gateway(deployment, antivirus=f"<clamd_socket>{clamd.socket_path}</clamd_socket>\n"
                      "<timeout_seconds>5</timeout_seconds>\n")
    deployment.start()
    return deployment


class TestClamdEndToEnd:
    def test_eicar_attachment_is_quarantined_in_virus_with_the_signature_name(
            self, with_clamd: Deployment) -> None:
        """EICAR in a base64 MIME attachment lands in Virus, the signature name as reason."""
        wire = with_clamd.send(subject="invoice", body="see attachment",
                               attachment=("invoice.com", EICAR))
        assert EICAR not in wire  # base64-encoded on the wire
        with_clamd.send(subject="hello", body="clean")
        (record,) = wait_for("the virus in quarantine", with_clamd.quarantined)
        (q,) = record["quarantines"]
        assert q["quarantine"] == "Virus"
        assert q["reason"].startswith(f"a/v verdict:VIRAL {SIGNATURE_NAME}")
        delivered = wait_for("the clean message", with_clamd.delivered)
        assert [message_from_bytes(c)["Subject"] for _, c in delivered] == ["hello"]
        assert gateway_lines(with_clamd, rf'MID \d+ quarantined to "Virus" \(a/v verdict:'
                             rf'VIRAL {SIGNATURE_NAME}\S*\)$')
        assert gateway_lines(with_clamd, rf"MID \d+ antivirus positive '{SIGNATURE_NAME}")
        assert gateway_lines(with_clamd, r"MID \d+ antivirus negative$")

    def test_clamd_down_holds_mail_until_it_is_back(self, with_clamd: Deployment,
                                                    clamd: ClamdProcess) -> None:
        """With clamd stopped mail is held (temporary failure); once back it is scanned."""
        clamd.stop()
        with_clamd.send(subject="held clean", body="clean")
        with_clamd.send(subject="held virus", body="x", attachment=("a.com", EICAR))
        wait_for("two temporary failures", lambda: len({
            m.group(1) for line in with_clamd.mail_logs("gateway")
            if (m := re.search(r"MID (\d+) temporary failure in antivirus: clamd unix:\S+ "
                               r"unavailable: .*; message kept in the spool, retry in", line))
        }) == 2)
        assert len(with_clamd.spooled("gateway")) == 2
        assert with_clamd.delivered() == [] and with_clamd.quarantined() == []

        clamd.start()
        (record,) = wait_for("the virus in quarantine", with_clamd.quarantined)
        assert record["subject"] == "held virus"
        assert record["quarantines"][0]["quarantine"] == "Virus"
        (delivered,) = wait_for("the clean message", with_clamd.delivered)
        assert message_from_bytes(delivered[1])["Subject"] == "held clean"


class TestOutbreakRescan:
    def test_removed_rule_releases_the_kept_copy_with_the_reason(
            self, deployment: Deployment) -> None:
        """When its rule is removed, the gateway rescans its copy and asks for a release."""
        rules = deployment.root / "gateway" / "outbreak-rules.json"
        rules.write_text(json.dumps(RULES_V1))
        configure_gateway(deployment, outbreak=f"<rules_file>{rules}</rules_file>\n"
                          "<quarantine_threat_level>3</quarantine_threat_level>\n"
                          "<check_interval_seconds>0.2</check_interval_seconds>\n")
        deployment.start()
        deployment.send(subject="parcel", body="Track: http://www.parcel-track.example/track/1")
        deployment.send(subject="low", body="http://low.example/ below the threshold")
        (record,) = wait_for("the outbreak message in quarantine", deployment.quarantined)
        (q,) = record["quarantines"]
        assert (q["quarantine"], q["reason"]) == ("Outbreak", "VOF rule:OF-PARCEL")
        wait_for("the low-threat message delivered", deployment.delivered)
        copies = deployment.root / "gateway" / "data" / "outbreak_copies"
        assert [p.stem for p in copies.glob("*.json")] == [str(record["origin_mid"])]

        rules.write_text(json.dumps({"version": "2", "rules": RULES_V1["rules"][1:]}))
        mid = record["origin_mid"]
        (line,) = wait_for("the rescan in mail_logs", lambda: gateway_lines(
            deployment, rf"MID {mid} rescanned: "))
        assert line.endswith(f"MID {mid} rescanned: VOF rule:OF-PARCEL no longer matches at "
                             "threat level >= 3 (rules version 2); release from centralized "
                             'quarantine "Outbreak" requested (rescanned)')
        assert gateway_lines(deployment, r"Outbreak rules updated from .*: version 2, 2 rules$")
        assert list(copies.glob("*.json")) == []
        # The notice travels over CPQ; the manager releases the message "(rescanned)",
        # and the gateway delivers it downstream.
        (notice_line,) = wait_for("the notice queued", lambda: gateway_lines(
            deployment, rf"MID \d+ outbreak rescan notice for MID {mid} \(release\) queued"))
        delivered = wait_for("the released message downstream", lambda: [
            c for _, c in deployment.delivered() if b"parcel-track" in c])
        assert len(delivered) == 1
        manager_log = "\n".join(deployment.mail_logs("manager"))
        assert f"MID {record['id']} outbreak rescan by gw1.pvoq.test (ESA MID {mid})" in manager_log
        assert re.search(rf'MID {record["id"]} released from quarantine "Outbreak" '
                         rf"\(rescanned\) t=\d+", manager_log)
        assert deployment.quarantined() == []
        assert list((deployment.root / "gateway" / "data" / "outbreak_notices")
                    .glob("*.json")) == []

    def test_bad_rules_file_keeps_the_rules_in_force(self, deployment: Deployment) -> None:
        """A broken rules update is refused and logged; the old rules keep catching."""
        rules = deployment.root / "gateway" / "outbreak-rules.json"
        rules.write_text(json.dumps(RULES_V1))
        configure_gateway(deployment, outbreak=f"<rules_file>{rules}</rules_file>\n"
                          "<check_interval_seconds>0.2</check_interval_seconds>\n")
        deployment.start()
        rules.write_text('{"rules": [{"id": "X", "threat_level": 9, "urls": ["a"]}]}')
        wait_for("the refusal", lambda: gateway_lines(
            deployment, r"Outbreak rules update refused, the rules in force are kept: .*"
                        r"threat_level must be an integer from 1 to 5"))
        deployment.send(subject="parcel", body="http://parcel-track.example/track")
        (record,) = wait_for("the outbreak message in quarantine", deployment.quarantined)
        assert record["quarantines"][0]["reason"] == "VOF rule:OF-PARCEL"


class TestReleaseRescan:
    def test_outbreak_release_is_rescanned_by_antivirus(self, deployment: Deployment,
                                                        tmp_path: Path) -> None:
        """Released from Outbreak after the virus got a signature, a message lands in Virus."""
        clamd = ClamdProcess(tmp_path / "clamd-late", eicar=False)
        try:
            clamd.start()
        except ClamdUnavailable as exc:
            pytest.fail(f"a real clamd is required (Debian package clamav-daemon): {exc}")
        try:
            rules = deployment.root / "gateway" / "outbreak-rules.json"
            rules.write_text(json.dumps(RULES_V1))
            configure_gateway(
                deployment,
                antivirus=f"<clamd_socket>{clamd.socket_path}</clamd_socket>\n",
                outbreak=f"<rules_file>{rules}</rules_file>\n")
            deployment.start()
            deployment.send(subject="parcel", body="http://parcel-track.example/track",
                            attachment=("label.com", EICAR))
            (first,) = wait_for("the message in Outbreak", deployment.quarantined)
            assert [q["quarantine"] for q in first["quarantines"]] == ["Outbreak"]

            clamd.stop()
            clamd.eicar = True  # the signature arrives
            clamd.start()
            deployment.admin(deployment.manager_config, "quarantine.release",
                             {"mid": first["id"]})
            (second,) = wait_for("the release caught by anti-virus", lambda: [
                m for m in deployment.quarantined() if m["id"] != first["id"]])
            (q,) = second["quarantines"]
            assert q["quarantine"] == "Virus"
            assert q["reason"].startswith(f"a/v verdict:VIRAL {SIGNATURE_NAME}")
            released = gateway_lines(deployment, rf"MID (\d+) received from the SMA .* \(MID "
                                     rf"originally {first['origin_mid']}\)")
            new_mid = re.search(r"MID (\d+) received", released[0]).group(1)  # type: ignore
            assert not gateway_lines(deployment, rf'MID {new_mid} quarantined to "Outbreak"')
            assert not gateway_lines(deployment, rf"MID {new_mid} Outbreak Filters")
            assert deployment.delivered() == []
        finally:
            clamd.stop()


class TestPerRecipientPolicies:
    def test_recipients_of_different_policies_split_the_message(
            self, deployment: Deployment) -> None:
        """Recipients under two policies get two MIDs, each scanned with its policy."""
        configure_gateway(deployment)
        path = deployment.gateway_config
        path.write_text(path.read_text().replace("</config>", (
            "  <mail_policies>\n    <policy>\n      <name>Executives</name>\n"
            "      <recipient>^ceo@example\\.com$</recipient>\n"
            "      <antivirus>false</antivirus>\n    </policy>\n  </mail_policies>\n"
            "</config>")))
        deployment.start()
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = ("alice@sender.example",
                                                  "bob@example.com, ceo@example.com", "split")
        msg.set_content("see attachment")
        msg.add_attachment(EICAR, maintype="application", subtype="octet-stream",
                           filename="a.com")
        with smtplib.SMTP(deployment.ip, deployment.ports["gateway_smtp"], timeout=30) as smtp:
            smtp.sendmail("alice@sender.example", ["bob@example.com", "ceo@example.com"],
                          msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))
        (record,) = wait_for("bob's part in Virus", deployment.quarantined)
        shown = deployment.admin(deployment.manager_config, "quarantine.show",
                                 {"mid": record["id"]})["data"]
        assert [r["address"] for r in shown["recipients"]] == ["bob@example.com"]
        assert record["quarantines"][0]["quarantine"] == "Virus"
        ((envelope, _),) = wait_for("the CEO's part delivered", deployment.delivered)
        assert envelope["rcpt_tos"] == ["ceo@example.com"]
        split = gateway_lines(deployment, r"MID \d+ rewritten to MID \d+ by per-recipient "
                              r"policy (DEFAULT|Executives) \(RID \[\d\]\)$")
        assert [re.search(r"policy (\S+) \(RID \[(\d)\]", s).groups() for s in split  # type: ignore[union-attr]
                ] == [("DEFAULT", "0"), ("Executives", "1")]
        original = {re.search(r"MID (\d+) rewritten", s).group(1) for s in split}  # type: ignore[union-attr]
        assert len(original) == 1
        assert record["origin_mid"] not in {int(m) for m in original}


FILTERS = """
drop_it: if subject == "^drop me$" { drop(); }
bounce_it: if subject == "^bounce me$" { bounce(); }
copy_it: if subject == "^copy me$" { duplicate-quarantine("Policy"); }
tag: if true { insert-header("X-Pvoq-Scanned", "yes"); strip-header("X-Internal"); }
"""


class TestMessageFilterActions:
    def test_drop_bounce_duplicate_and_modify(self, deployment: Deployment) -> None:
        """Drop and bounce end a message (a bounce sends a DSN); a duplicate is quarantined
        while the original goes on; header changes reach the recipient."""
        configure_gateway(deployment)
        path = deployment.gateway_config
        text = path.read_text()
        start = text.index("<message_filters>") + len("<message_filters>")
        path.write_text(text[:start] + FILTERS + text[text.index("</message_filters>"):])
        deployment.start()
        for subject in ("drop me", "bounce me", "copy me"):
            deployment.send(subject=subject, body="x")
        deployment.send(subject="last", body="marker")
        (record,) = wait_for("the duplicate in Policy", deployment.quarantined)
        assert (record["subject"], record["quarantines"][0]["reason"]) == (
            "copy me", "message filter:copy_it")
        delivered = wait_for("three deliveries", lambda: len(deployment.delivered()) == 3
                             and deployment.delivered())
        messages = {m["Subject"]: (env, m) for env, c in delivered
                    if (m := message_from_bytes(c))}
        assert sorted(messages) == ["Delivery Status Notification (Failure)", "copy me", "last"]
        assert all(messages[s][1]["X-Pvoq-Scanned"] == "yes" for s in ("copy me", "last"))
        dsn_envelope, dsn = messages["Delivery Status Notification (Failure)"]
        assert dsn_envelope["rcpt_tos"] == ["alice@sender.example"]
        assert b"Status: 5.7.1" in dsn.as_bytes()
        assert gateway_lines(deployment, r"MID \d+ dropped by message filter:drop_it$")
        assert gateway_lines(deployment, r"Bounced: MID \d+ to RID \[0\] - 5\.7\.1 message "
                             r"bounced by message filter:bounce_it$")
        assert gateway_lines(deployment, r"MID \d+ was generated based on MID \d+ by "
                             r"duplicate-quarantine \(message filter:copy_it\)$")
        wait_for("an empty spool", lambda: not deployment.spooled("gateway"))


class TestPipelineShow:
    def test_cli_prints_the_stages_in_order_with_the_release_path(
            self, running: Deployment) -> None:
        """`pvoq cli pipeline show` prints the five stages in order and where releases resume."""
        out = subprocess.run(
            [sys.executable, "-m", "pvoq", "cli", "-c", str(running.gateway_config), "pipeline",
             "show"], capture_output=True, text=True, timeout=60, check=True).stdout
        rows = [line.split()[1] for line in out.splitlines() if re.match(r"\d  ", line)]
        assert rows == ["message_filters", "antivirus", "content_filters", "outbreak_filters",
                        "delivery"]
        assert re.search(r"^2  antivirus +V +Virus +30s +built-in EICAR", out, re.M)
        assert ("released from outbreak_filters  runs: antivirus -> delivery" in out)
        assert ("released from message_filters   runs: antivirus -> content_filters -> "
                "outbreak_filters -> delivery" in out)


class TestQuarantineMetadata:
    def test_transfer_metadata_carries_every_verdict_and_the_why(
            self, deployment: Deployment) -> None:
        """A message caught twice is queued once for the.cpq.host with both quarantines,
        the outbreak retention, and every stage's hits and misses."""
        rules = deployment.root / "gateway" / "outbreak-rules.json"
        rules.write_text(json.dumps(RULES_V1))
        configure_gateway(deployment, outbreak=f"<rules_file>{rules}</rules_file>\n"
                          "<retention_other_seconds>600</retention_other_seconds>\n")
        deployment.start_sink()
        deployment.start_gateway()  # no manager: the transfer waits in the spool
        deployment.send(subject="confidential parcel",
                        body="http://parcel-track.example/track")

        def queued() -> dict | None:
            for found in deployment.spooled("gateway"):
                if found.state == "queued":
                    return json.loads(found.to_json())
            return None

        entry = wait_for("the entry queued for the.cpq.host", queued)
        assert {r["host"] for r in entry["recipients"]} == {"the.cpq.host"}
        meta = entry["meta"]["cpq"]
        assert [(q["name"], q["stage"], q["reason"]) for q in meta["quarantines"]] == [
            ("Policy", "content_filters", "content filter:confidential_subject"),
            ("Outbreak", "outbreak_filters", "VOF rule:OF-PARCEL")]
        assert (meta["quarantines"][1]["retention_s"], meta["quarantines"][1]["threat_level"]
                ) == (600, 4)
        trace = {t["stage"]: t for t in meta["scan_trace"]}
        assert list(trace) == ["message_filters", "antivirus", "content_filters",
                               "outbreak_filters"]
        assert trace["message_filters"]["misses"] == ["message filter:no_exe"]
        assert trace["antivirus"]["outcome"] == "pass"
        assert trace["content_filters"]["hits"] == ["content filter:confidential_subject"]
