"""SSH between the manager and its gateways.

The gateway runs a small SSH command service (`service`): key authentication
only, a fixed list of read-only operator commands, and one enrolment command
that installs the manager's key against a one-time token. The manager's side
(`client`) pins each gateway's host key on first use, installs its own key,
and asks a gateway where its `cpq_listener` is; `lookup` caches the answers
for the release queue. Key and pin files live in `<data_dir>/ssh/` (`keys`).

Errors: every failure of the manager's side is one `SshFault` whose text is
the cause an operator can act on (refused, host key mismatch, auth failure,
command error); it is logged as an AsyncOS application fault.
"""

from pvoq.remote.keys import SshFault

__all__ = ["SshFault"]
