"""The manager's SSH lookups of its gateways, and what the gateways report over them.

For each gateway of `<pvo_quarantines><gateways>`: is it added (pinned), does
its SSH service answer, does its host key match the pinned one (a wrong pin is
named with both fingerprints), is the manager's key authorized, and the last
application fault the running manager recorded (`gateway list`). The
gateway's `status`, read over that same link, gives its clock (the skew
check) and its listeners (the gateway side of "suspended or Offline", seen
from the manager). Doctor uses the manager's own key and pins and writes
nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pvoq.admin.protocol import AdminUnavailable
from pvoq.doctor.appliance import listener_results
from pvoq.doctor.context import Context, Refused, Unknown
from pvoq.doctor.result import CheckResult, fail, ok, warn
from pvoq.remote.client import SshClient
from pvoq.remote.keys import CLIENT_KEY_FILE, PINS_FILE, PinnedGateways, SshFault

SKEW_WARN_S = 5.0
SKEW_FAIL_S = 60.0


def skew_result(name: str, *, local_before: float, local_after: float, remote: float,
                who: str) -> CheckResult:
    """The clock skew of *who* (reported *remote* time, read between the two local times)."""
    middle = (local_before + local_after) / 2
    slack = (local_after - local_before) / 2
    skew = remote - middle
    seen = f"{who} is {abs(skew):.1f}s {'ahead' if skew > 0 else 'behind'} (±{slack:.1f}s)"
    fix = "synchronise both clocks with NTP (e.g. timedatectl set-ntp true; chronyc tracking)"
    beyond = abs(skew) - slack
    if beyond > SKEW_FAIL_S:
        return fail(name, seen + ": mail_logs times and quarantine times disagree", fix)
    if beyond > SKEW_WARN_S:
        return warn(name, seen, fix)
    return ok(name, seen)


def fault_fix(ctx: Context, name: str, pin_host: str, pin_port: int, fault: str) -> str:
    manager = f"pvoq cli -c {ctx.path}"
    if "host key mismatch" in fault:
        return (f"verify the gateway's key with its admin (pvoq cli -c GATEWAY ssh show), then "
                f"{manager} gateway add {name} --host {pin_host} --ssh-port {pin_port} "
                "--replace")
    if "authentication failed" in fault:
        return (f"authorize the manager's key on the gateway: {manager} gateway pubkey > "
                "manager.pub, then pvoq cli -c GATEWAY ssh authorize manager.pub (or "
                f"{manager} gateway add {name} --token TOKEN)")
    if "refused" in fault or "timed out" in fault or "connection failed" in fault:
        return (f"start the gateway's SSH command service (<ssh><enabled> on the gateway, "
                f"listening on {pin_host}:{pin_port}) or open that port from the manager")
    return (f"read the manager's mail_logs ({manager} grep 'application fault'); an "
            f"internal fault usually clears with a restart of the manager ({ctx.start_command})")


async def check_ssh(ctx: Context) -> list[CheckResult]:
    cfg = ctx.config
    if cfg.role != "manager" or not cfg.pvo.gateways:
        return []
    ssh_dir = Path(cfg.data_dir) / "ssh"
    pins = PinnedGateways(ssh_dir / PINS_FILE).all() if (ssh_dir / PINS_FILE).exists() else {}
    faults: dict[str, str | None] = {}
    try:
        for row in (await ctx.admin("gateway.list")).get("gateways", []):
            faults[str(row["name"]).lower()] = row.get("fault")
    except (AdminUnavailable, Unknown, Refused):
        pass
    client: SshClient | None = None
    if pins and (ssh_dir / CLIENT_KEY_FILE).exists():
        client = SshClient(Path(cfg.data_dir), hostname=cfg.hostname,
                           timeout_s=min(ctx.timeout_s, cfg.ssh.timeout_seconds))
    results: list[CheckResult] = []
    for g in cfg.pvo.gateways:
        name = f"ssh {g.hostname}"
        pin = pins.get(g.hostname.lower())
        if pin is None or client is None:
            results.append(ok(name, "not added: releases go to the configured address "
                                    f"{g.address}:{g.cpq_port} (optional: pvoq cli -c "
                                    f"{ctx.path} gateway add {g.hostname} ... to follow its "
                                    "cpq_listener)"))
            continue
        where = f"{pin.host}:{pin.port}, pinned key {pin.fingerprint}"
        before = time.time()
        try:
            out = await client.run(g.hostname, "status")
        except SshFault as exc:
            results.append(fail(name, f"{where}: {exc}",
                                fault_fix(ctx, g.hostname, pin.host, pin.port, str(exc))))
            results.append(fail(f"clock skew {g.hostname}", "cannot read the gateway's clock: "
                                                            "the SSH link fails", "fix the "
                                                            f"ssh {g.hostname} line first"))
            continue
        after = time.time()
        try:
            status: dict[str, Any] = json.loads(out)
        except ValueError:
            results.append(fail(name, f"{where}: malformed answer to 'status': {out[:120]!r}",
                                "run the same pvoq release on the gateway and the manager"))
            continue
        fault = faults.get(g.hostname.lower())
        if fault:
            results.append(warn(name, f"{where}: key verified, authorized; but the running "
                                      f"manager's last lookup failed: {fault}",
                                fault_fix(ctx, g.hostname, pin.host, pin.port, fault)))
        else:
            results.append(ok(name, f"{where}: host key verified, manager authorized, "
                                    "no application fault"))
        if isinstance(status.get("status_as_of"), int | float):
            results.append(skew_result(f"clock skew {g.hostname}", local_before=before,
                                       local_after=after, remote=float(status["status_as_of"]),
                                       who=f"gateway {g.hostname}"))
        results += listener_results(ctx, status, where=f"gateway {g.hostname}",
                                    cli="pvoq cli -c GATEWAY")
    return results


async def check_skew_here(ctx: Context) -> list[CheckResult]:
    """On a gateway: the skew is measured from the manager, over the SSH link."""
    if ctx.role != "gateway":
        return []
    if not ctx.config.ssh.enabled:
        return [warn("clock skew", "not measurable: the manager reads this gateway's clock "
                                   "over SSH, which is disabled here",
                     f"enable <ssh> in {ctx.path} and add this gateway on the manager "
                     "(pvoq cli -c MANAGER gateway add ...); or compare `date -u` on both")]
    return [ok("clock skew", "measured from the manager over SSH: run pvoq doctor there")]
