"""Run every check in the seed's order, and render the report (text or JSON).

`check_all(config)` (async) and `run_checks(config)` (blocking) return the
`CheckResult`s; the web console and `pvoq doctor` call them. A check that
needs the running appliance and cannot reach it is a FAIL whose fix starts it;
a check that breaks is a FAIL naming the exception, never a crash of the report.
`file_results(path)` is what can still be said of a configuration file that
does not load (its error, and the cluster rule).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from pvoq.admin.protocol import AdminUnavailable
from pvoq.config.errors import ConfigError
from pvoq.config.model import Config
from pvoq.doctor import appliance, host, network, security, ssh
from pvoq.doctor.context import Context, Refused, Unknown
from pvoq.doctor.result import CheckResult, Status, fail

Check = Callable[[Context], Awaitable[list[CheckResult]]]

# (the name of its line when it cannot run, the check), in the order of the seed's note
CHECKS: Sequence[tuple[str, Check]] = (
    ("appliance", appliance.check_running),
    ("listeners", appliance.check_listeners),
    ("cpq reach", network.check_peers),
    ("queue", appliance.check_cpq_queue),
    ("cluster interface", host.check_cluster),
    ("ssh", ssh.check_ssh),
    ("ciphers", security.check_ciphers),
    ("certificate", security.check_certificate),
    ("enable readiness", appliance.check_enable),
    ("log subscription", appliance.check_logsub),
    ("clock skew", ssh.check_skew_here),
    ("disk", host.check_disk),
    ("permissions", security.check_permissions),
    ("clamd", host.check_clamd),
    ("store schema", host.check_schema),
)


async def _one(ctx: Context, name: str, check: Check) -> list[CheckResult]:
    try:
        return await check(ctx)
    except AdminUnavailable as exc:
        return [fail(name, f"cannot run: the {ctx.role} does not answer ({exc})",
                     f"start it: {ctx.start_command}")]
    except (Unknown, Refused) as exc:
        return [fail(name, f"cannot run: {exc}", f"check the {ctx.role} with "
                                                 f"{ctx.cli('status')}")]
    except Exception as exc:  # a broken check is a line of the report, not its end
        return [fail(name, f"the check itself failed: {type(exc).__name__}: {exc}",
                     "report this to the pvoq maintainers with the output of pvoq doctor")]


async def check_all(config: Config, *, timeout_s: float = 5.0) -> list[CheckResult]:
    """Every check against the live appliance of *config*, in the seed's order."""
    ctx = Context(config, timeout_s=timeout_s)
    results: list[CheckResult] = []
    for name, check in CHECKS:
        results += await _one(ctx, name, check)
    return results


def run_checks(config: Config, *, timeout_s: float = 5.0) -> list[CheckResult]:
    """`check_all` for a caller without an event loop."""
    return asyncio.run(check_all(config, timeout_s=timeout_s))


def file_results(path: Path, error: ConfigError) -> list[CheckResult]:
    """A configuration that does not load: its error, then the cluster rule if clustered."""
    results = [fail("configuration", str(error.located(path=str(path))),
                    f"correct it, then pvoq config check -c {path}")]
    cluster = host.cluster_results(path)
    if cluster[0].observed != "not clustered":
        results += cluster
    return results


def failed(results: Sequence[CheckResult]) -> bool:
    return any(r.status is Status.FAIL for r in results)


def printable(text: str) -> str:
    """*text* with every control character escaped: peers' replies are shown as they came."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256
                   else f"\\u{ord(c):04x}" for c in text)


def render_text(results: Sequence[CheckResult], *, title: str) -> str:
    lines = [printable(title)]
    for r in results:
        line = f"{r.status:<4}  {printable(r.name)}: {printable(r.observed)}"
        if r.fix:
            line += f" -- fix: {printable(r.fix)}"
        lines.append(line)
    counts = {s: sum(r.status is s for r in results) for s in Status}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def render_json(results: Sequence[CheckResult], *, config: Config | None, path: Path) -> str:
    return json.dumps({"config": str(path),
                       "role": config.role if config else None,
                       "hostname": config.hostname if config else None,
                       "ok": not failed(results),
                       "checks": [r.to_json() for r in results]}, indent=2)
