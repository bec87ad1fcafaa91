"""What the CPQ listener and client unit tests share: names, a HAT, and a pair of certificates
(`pvoq.testing.cpqlink` has them, for the benches too)."""

from __future__ import annotations

from pvoq.testing.cpqlink import GATEWAY, MANAGER, RELAY_LOCALHOST, issue_pair

__all__ = ["GATEWAY", "MANAGER", "RELAY_LOCALHOST", "issue_pair"]
