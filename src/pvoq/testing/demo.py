"""`pvoq demo`: a whole deployment on localhost, and one message's journey.

Starts a manager, a gateway and a downstream sink (three processes), sends a
clean, a policy, an EICAR and an outbreak message, shows the quarantines,
releases the policy message, shows it arrive downstream, prints the
mail_logs lines of that journey on both appliances, and stops everything it
started. Exit 0 only if every step happened.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pvoq.config.filterlang import BuiltinQuarantine
from pvoq.maillog.writer import format_time
from pvoq.scan.pipeline import EICAR
from pvoq.testing.localdeploy import OUTBREAK_HOST, Deployment, DeploymentError, wait_for

console = Console(highlight=False, width=None if Console().is_terminal else 160)


def _step(text: str) -> None:
    console.print(f"[bold cyan]==>[/] {text}")


def journey_lines(lines: list[str], mids: set[int]) -> list[str]:
    """The mail_logs lines about *mids*, their connections (ICID) and deliveries (DCID)."""
    icids: set[str] = set()
    dcids: set[str] = set()
    mid_re = "|".join(str(m) for m in mids)
    for line in lines:
        if m := re.search(rf"Start MID ({mid_re}) ICID (\d+)$", line):
            icids.add(m.group(2))
        if m := re.search(rf"DCID (\d+) MID ({mid_re}) ", line):
            dcids.add(m.group(1))
    keep = []
    for line in lines:
        text = line.split(": ", 1)[-1]
        if (re.search(rf"\bMID ({mid_re})\b", text)
                or any(re.search(rf"\bICID {i}\b", text) and "MID" not in text for i in icids)
                or any(re.search(rf"\bDCID {d}\b", text) and "MID" not in text for d in dcids)):
            keep.append(line)
    return keep


def _quarantine_table(rows: list[dict]) -> Table:
    table = Table(title="Centralized PVO quarantines on the manager", title_justify="left")
    for col in ("MID", "Received", "Gateway (MID)", "Sender", "Subject", "Quarantine: reason"):
        table.add_column(col)
    for m in rows:
        reasons = "; ".join(f"{q['quarantine']}: {q['reason']}" for q in m["quarantines"])
        table.add_row(str(m["id"]), format_time(m["received_at"]),
                      f"{m['origin_host']} ({m['origin_mid']})", m["sender"], m["subject"],
                      reasons)
    return table


def run_demo(*, keep: bool = False, directory: Path | None = None) -> int:
    root = directory or Path(tempfile.mkdtemp(prefix="pvoq-demo-"))
    dep = Deployment(root, metrics=True)
    ok = False
    try:
        _step(f"Creating a deployment in {root} (CPQ CA, manager, gateway)")
        dep.init()
        _step("Starting the sink, the manager and the gateway (three processes)")
        dep.start()
        for name, proc in dep.procs.items():
            console.print(f"    {name:<8} pid {proc.pid}")
        console.print(f"    gateway SMTP 127.0.0.1:{dep.ports['gateway_smtp']}, gateway "
                      f"cpq_listener :{dep.ports['gateway_cpq']}, manager cpq_listener "
                      f":{dep.ports['manager_cpq']}, sink :{dep.ports['sink']}")
        console.print(f"    metrics: gateway http://127.0.0.1:{dep.ports['gateway_metrics']}"
                      f"/metrics, manager http://127.0.0.1:{dep.ports['manager_metrics']}/metrics")

        _step("Sending four messages to the gateway")
        dep.send(subject="Lunch on Friday?", body="A clean message.")
        dep.send(subject="Confidential: Q3 numbers", body="Caught by a content filter.")
        dep.send(subject="Invoice attached", body="See attachment.",
                 attachment=("invoice.com", EICAR))
        dep.send(subject="Your parcel", body=f"Track it at http://{OUTBREAK_HOST}/track?id=1")

        rows = wait_for("three messages in the manager's quarantines",
                        lambda: (r := dep.quarantined()) and len(r) >= 3 and r)
        wait_for("the clean message at the sink", lambda: len(dep.delivered()) >= 1)
        console.print(_quarantine_table(rows))
        console.print(f"    clean message delivered downstream: "
                      f"{dep.delivered()[0][0]['rcpt_tos']}")

        policy = next(m for m in rows if any(q["quarantine"] == BuiltinQuarantine.POLICY
                                             for q in m["quarantines"]))
        _step(f"Releasing MID {policy['id']} from the Policy quarantine")
        result = dep.admin(dep.manager_config, "quarantine.release", {"mid": policy["id"]})
        console.print(f"    {result['text']}")
        arrived = wait_for("the released message at the sink",
                           lambda: len(dep.delivered()) >= 2 and dep.delivered()[1])
        envelope, content = arrived
        if b"Caught by a content filter." not in content:
            raise DeploymentError("the released message arrived altered")
        subject = next((h for h in content.decode(errors="replace").splitlines()
                        if h.startswith("Subject:")), "")
        console.print(f"    arrived at the sink for {envelope['rcpt_tos']}, body intact: {subject}")

        _step("The journey in mail_logs")
        gw_lines = dep.mail_logs("gateway")
        origin_mid = policy["origin_mid"]
        release_mid = next(
            int(m.group(1)) for line in gw_lines
            if (m := re.search(rf"MID (\d+) received from the SMA .*MID originally "
                               rf"{origin_mid}\)", line)))
        console.print("[bold]gateway[/] (in, scan, CPQ to the manager):")
        for line in journey_lines(gw_lines, {origin_mid}):
            console.print(f"  {line}", soft_wrap=True, markup=False)
        console.print("[bold]manager[/] (CPQ in, quarantine, release, CPQ to the gateway):")
        for line in journey_lines(dep.mail_logs("manager"), {policy["id"]}):
            console.print(f"  {line}", soft_wrap=True, markup=False)
        console.print("[bold]gateway[/] (release in, delivery downstream):")
        for line in journey_lines(gw_lines, {release_mid}):
            console.print(f"  {line}", soft_wrap=True, markup=False)
        ok = True
    except DeploymentError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
    finally:
        if keep and ok:
            _step("The deployment keeps running:")
            console.print(f"    send mail:   smtp 127.0.0.1:{dep.ports['gateway_smtp']}")
            console.print(f"    quarantines: pvoq cli -c {dep.manager_config} quarantine list")
            console.print(f"    gateway:     pvoq cli -c {dep.gateway_config} tophosts")
            console.print(f"    logs:        {root}/*/data/logs/mail_logs")
            console.print(f"    metrics:     curl http://127.0.0.1:{dep.ports['gateway_metrics']}"
                          f"/metrics (manager: {dep.ports['manager_metrics']})")
            pids = " ".join(str(p.pid) for p in dep.procs.values())
            console.print(f"    stop it:     kill {pids}")
        else:
            dep.stop_all()
            if ok and directory is None:
                shutil.rmtree(root, ignore_errors=True)
    if ok:
        _step("Demo complete: every step happened." if not keep else "Demo complete.")
    return 0 if ok else 1
