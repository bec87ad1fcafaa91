"""What the running appliance says of itself over its admin socket: is it up, are its
listeners or its delivery suspended (the system Offline), what waits in the CPQ
destination (`the.cpq.host` / `the.cpq.release.host`), the "Enable" readiness check
(gateway), and the subscription to the gateways' mail logs (manager)."""

from __future__ import annotations

import time
from typing import Any

from pvoq.admin.protocol import AdminUnavailable
from pvoq.config.model import THE_CPQ_HOST, THE_CPQ_RELEASE_HOST
from pvoq.doctor.context import Context, Refused, Unknown
from pvoq.doctor.result import CheckResult, fail, ok, warn

QUEUED_WARN_S = 300.0        # queued this long without an attempt: WARN
LOGSUB_INTERVAL_S = 60.0     # the pull interval assumed when the manager does not say
LOGSUB_MISSED_PULLS = 3      # a last pull older than this many intervals: FAIL


def age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


async def check_running(ctx: Context) -> list[CheckResult]:
    try:
        status = await ctx.admin("status")
    except AdminUnavailable as exc:
        return [fail("appliance", f"the {ctx.role} is not running: {exc}",
                     f"start it: {ctx.start_command}")]
    up = time.time() - float(status.get("up_since") or time.time())
    return [ok("appliance", f"{status.get('role', ctx.role)} {status.get('hostname')} running "
                            f"for {age(up)}")]


def listener_results(ctx: Context, status: dict[str, Any], *, where: str = "",
                     cli: str | None = None) -> list[CheckResult]:
    """The listeners and delivery lines from a `status` answer (*where*: whose, when not
    this appliance's, added to the lines' names; *cli*: the command line that reaches it)."""
    run = (lambda c: f"{cli} {c}") if cli else ctx.cli
    suffix = f" {where}" if where else ""
    suspended = [str(n) for n in status.get("receiving_suspended") or []]
    results = []
    if status.get("system_status") == "Offline":
        results.append(fail(f"listeners{suffix}",
                            f"system status Offline (receiving suspended on "
                            f"{', '.join(suspended) or 'every listener'})", run("resume")))
    elif suspended:
        results.append(fail(f"listeners{suffix}",
                            f"receiving suspended on {', '.join(suspended)}",
                            " ; ".join(run(f"resumelisteners {n}") for n in suspended)))
    else:
        results.append(ok(f"listeners{suffix}", "system status Online, every listener "
                                                 "receiving"))
    if status.get("delivery_suspended"):
        results.append(fail(f"delivery{suffix}", "delivery suspended", run("resumedel")))
    else:
        results.append(ok(f"delivery{suffix}", "delivery running"))
    return results


async def check_listeners(ctx: Context) -> list[CheckResult]:
    return listener_results(ctx, await ctx.admin("status"))


async def check_cpq_queue(ctx: Context) -> list[CheckResult]:
    host = THE_CPQ_HOST if ctx.role == "gateway" else THE_CPQ_RELEASE_HOST
    name = f"queue {host}"
    try:
        found = await ctx.admin("showrecipients", {"by": "host", "value": host})
    except Refused:  # no record of that host: nothing was ever queued for it
        return [ok(name, "empty")]
    messages = found.get("messages") or []
    if not messages:
        return [ok(name, "empty")]
    now = time.time()
    oldest = min(float(m.get("received") or now) for m in messages)
    errors: dict[str, int] = {}
    attempted = 0
    for m in messages:
        for r in m.get("recipients") or []:
            if r.get("attempts"):
                attempted += 1
            if r.get("last_error"):
                errors[str(r["last_error"])] = errors.get(str(r["last_error"]), 0) + 1
    total = int(found.get("total") or len(messages))
    seen = (f"{total} message{'s' if total != 1 else ''}, oldest {age(now - oldest)} old, "
            f"{attempted} recipient{'s' if attempted != 1 else ''} attempted")
    peer = "manager" if ctx.role == "gateway" else "gateway"
    fix = (f"fix the path to the {peer} (the cpq lines above), then "
           f"{ctx.cli(f'delivernow {host}')}; list them with "
           f"{ctx.cli(f'showrecipients --host {host}')}")
    if errors:
        last = max(errors.items(), key=lambda kv: kv[1])[0]
        return [fail(name, f"{seen}; last error: {last}", fix)]
    if now - oldest > QUEUED_WARN_S:
        return [warn(name, f"{seen}; queued without an attempt", fix)]
    return [ok(name, f"{seen}; being delivered")]


async def check_enable(ctx: Context) -> list[CheckResult]:
    if ctx.role != "gateway":
        return []
    if not ctx.config.pvo.all_managers:  # local mode with no manager: nothing to enable
        return [ok("enable readiness", "local quarantines; no manager is configured")]
    try:
        answer = await ctx.admin("pvo.check")
    except Refused as exc:
        return [fail("enable readiness", str(exc).replace("\n", "; "),
                     "troubleshoot it as the gateway-to-manager CPQ path (the cpq lines "
                     f"above), then {ctx.cli('pvo check')}")]
    rows = answer.get("managers") or []
    texts = "; ".join(str(r.get("text")) for r in rows) or "ready"
    return [ok("enable readiness", f"Ready: {texts}")]


def logsub_results(answer: dict[str, Any], *, now: float, cli: str) -> list[CheckResult]:
    """The log subscription lines from a `logsub.status` answer (its `data`)."""
    interval = float(answer.get("interval_s") or LOGSUB_INTERVAL_S)
    gateways = answer.get("gateways") or []
    if not gateways:
        return [warn("log subscription", "no gateway's mail logs are subscribed",
                     "add the gateways (pvoq cli -c FILE gateway add ...) on the manager")]
    results = []
    for g in gateways:
        name = f"log subscription {g.get('name')}"
        where = f"{g.get('host')}"
        last_pull = g.get("last_pull")
        lines = int(g.get("lines") or 0)
        err, err_time = g.get("last_error"), g.get("last_error_time")
        limit = float(g.get("interval_s") or interval) * LOGSUB_MISSED_PULLS
        fix = (f"make the gateway reachable over SSH (see the ssh lines), then {cli} "
               "logsub status")
        if last_pull is None:
            why = f"; last error: {err}" if err else ""
            results.append(fail(name, f"{where}: never pulled{why}", fix))
        elif err and (err_time or 0) >= float(last_pull):
            results.append(fail(name, f"{where}: pulls fail since {age(now - float(last_pull))}"
                                      f" ago; last error: {err}", fix))
        elif now - float(last_pull) > limit:
            results.append(fail(name, f"{where}: last pull {age(now - float(last_pull))} ago "
                                      f"(more than {LOGSUB_MISSED_PULLS} pull intervals)", fix))
        else:
            line_time = g.get("last_line_time")
            newest = f", newest line {age(now - float(line_time))} old" if line_time else ""
            results.append(ok(name, f"{where}: last pull {age(now - float(last_pull))} ago, "
                                    f"{lines} lines{newest}"))
    return results


async def check_logsub(ctx: Context) -> list[CheckResult]:
    if ctx.role != "manager":
        return []
    try:
        answer = await ctx.admin("logsub.status")
    except Unknown:
        return [warn("log subscription", "log subscription not available on this manager "
                                         "(no logsub.status command)",
                     "upgrade the manager to a release with the log subscription; meanwhile "
                     "read each gateway's mail_logs there (pvoq cli -c FILE grep ...)")]
    except Refused as exc:
        return [fail("log subscription", f"logsub.status refused: {exc}",
                     f"see {ctx.cli('logsub status')}")]
    return logsub_results(answer, now=time.time(), cli=f"pvoq cli -c {ctx.path}")
