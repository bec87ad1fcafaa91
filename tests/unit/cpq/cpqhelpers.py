"""What the CPQ listener and client unit tests share: names, a HAT, and a pair of certificates."""

from __future__ import annotations

from pathlib import Path

from pvoq.config.model import CpqCertificate
from pvoq.cpq.ca import CA_CERT_FILE, create_ca, issue_certificate

GATEWAY = "gw1.example.com"
MANAGER = "mgr.example.com"
RELAY_LOCALHOST = ("$RELAYED\n  RELAY {}\n$BLOCKED\n  REJECT {}\nRELAYLIST:\n  127.0.0.1\n"
                   "    $RELAYED (the gateway)\nALL\n  $BLOCKED (Everyone else)\n")


def issue_pair(base: Path) -> dict[str, CpqCertificate]:
    """A deployment CA under *base* and the CPQ certificates it issues, by role:
    `gateway` for GATEWAY and `manager` for MANAGER, both for 127.0.0.1."""
    create_ca(base / "ca")
    made = {}
    for hostname, role in ((GATEWAY, "gateway"), (MANAGER, "manager")):
        issued = issue_certificate(base / "ca", base / role, hostname=hostname, role=role,
                                   addresses=["127.0.0.1"])
        made[role] = CpqCertificate(base / "ca" / CA_CERT_FILE, issued.certificate,
                                    issued.private_key)
    return made
