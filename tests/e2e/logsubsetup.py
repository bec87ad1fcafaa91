"""What the log-subscription and tracking e2e tests share: a running gateway and manager
linked over real SSH (so the manager pulls the gateway's mail_logs), the configuration
snippets they add, the operator CLI, and the tracking index's readiness.

`subscribed_deployment(tmp_path, interval_s=..., chunk_lines=..., logs=...)` builds,
starts and stops (by PID) the deployment the `subscribed` fixtures of those files use.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pvoq.testing.localdeploy import Deployment

# The gateway's mail_logs rolled at 8K (many rollovers in a short test).
SMALL_LOGS = """\
  <logs>
    <log>
      <name>mail_logs</name>
      <max_file_size>8K</max_file_size>
      <max_files>100000</max_files>
    </log>
  </logs>
"""


def subscription(interval_s: float, chunk_lines: int | None = None) -> str:
    """A manager's `<log_subscription>`: pull every *interval_s*, *chunk_lines* at a time."""
    chunk = "" if chunk_lines is None else f"    <chunk_lines>{chunk_lines}</chunk_lines>\n"
    return (f"  <log_subscription>\n    <interval_seconds>{interval_s}</interval_seconds>\n"
            f"{chunk}  </log_subscription>\n")


def add_to_config(config: Path, section: str) -> None:
    """Add *section* (XML) at the end of the configuration file *config*."""
    config.write_text(config.read_text().replace("</config>", section + "</config>"))


@contextlib.contextmanager
def subscribed_deployment(tmp_path: Path, *, interval_s: float | None = None,
                          chunk_lines: int | None = None, gateway_logs: str | None = None,
                          **options: Any) -> Iterator[Deployment]:
    """A started gateway (SSH on) and manager, the gateway added over SSH so that the
    manager subscribes to its mail_logs; *interval_s*/*chunk_lines*: the manager's
    `<log_subscription>` (its defaults otherwise); *gateway_logs*: the gateway's `<logs>`;
    *options*: more `Deployment` settings (e.g. the console)."""
    dep = Deployment(tmp_path / "deploy", retry_min_s=0.5, retry_max_s=2.0, ssh=True,
                     **options)
    dep.init()
    if interval_s is not None:
        add_to_config(dep.manager_config, subscription(interval_s, chunk_lines))
    if gateway_logs is not None:
        add_to_config(dep.gateway_config, gateway_logs)
    try:
        dep.start()
        dep.add_gateway_over_ssh()
        yield dep
    finally:
        dep.stop_all()


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`pvoq cli -c CONFIG ARGS...` in a child process."""
    return subprocess.run([sys.executable, "-m", "pvoq", "cli", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60)


def find(lines: list[str], pattern: str) -> re.Match[str]:
    """The first match of *pattern* in *lines*; AssertionError if none."""
    for line in lines:
        if m := re.search(pattern, line):
            return m
    raise AssertionError(f"no line matches {pattern!r}")


def tracked(dep: Deployment, subject: str) -> list[dict[str, Any]] | None:
    """The journeys of *subject* once the released copy's downstream reply is in the
    manager's tracking index (after a pull now), else None."""
    dep.admin(dep.manager_config, "logsub.pull")
    journeys = dep.admin(dep.manager_config, "track", {"subject": subject})["data"]["journeys"]
    done = journeys and journeys[0]["releases"] and \
        journeys[0]["releases"][0]["deliveries"] and \
        journeys[0]["releases"][0]["deliveries"][0]["reply"]
    return journeys if done else None
