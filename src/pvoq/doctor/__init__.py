"""`pvoq doctor`: the seed's troubleshooting note as one command.

Every check of the note, run against the live deployment from the appliance
it is given (gateway or manager): the appliance itself over its admin socket,
the CPQ path and the SSH link probed over the network, the certificate, the
cipher lists, the files and the store read from disk. Each check gives one
`CheckResult(name, status, observed, fix)`; doctor never changes anything.

Modules, one per family of checks: `appliance` (admin socket: up, listeners,
the CPQ queue, Enable readiness, log subscription), `network` and `probe`
(the CPQ path), `ssh` (the manager's SSH lookups and the clock skew),
`security` (certificate, ciphers, permissions), `host` (disk, clamd, the
store's schema, the cluster rule); `runner` runs them and renders the report.
"""

from __future__ import annotations

from pvoq.doctor.result import CheckResult, Status
from pvoq.doctor.runner import check_all, run_checks

__all__ = ["CheckResult", "Status", "check_all", "run_checks"]
