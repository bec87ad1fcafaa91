"""The sending side of CPQ: a delivery destination for `the.cpq.host` and
`the.cpq.release.host`.

Every connection requires STARTTLS with a verified CPQ certificate (see
`smtp.client`) and the `XCPQ` EHLO keyword; each transaction sends the
entry's metadata as `XCPQ META` chunks between RCPT and DATA.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from pvoq.cpq.ca import peer_common_name, peer_role
from pvoq.cpq.metadata import encode_chunks
from pvoq.cpq.transfer import Kind
from pvoq.delivery.queue import Destination, Target
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.client import DeliveryError, SmtpConnection, TlsPolicy
from pvoq.spool.store import Entry

# How `Delivery start` and `Message done` lines end, by direction: AsyncOS's wording
# towards the manager (quarantined mail, rescan notices); back to a gateway, the same
# phrase saying what travels (a release, or a Send Copy of a message still held).
START_NOTE = "to Centralized Policy Quarantine"
DONE_NOTE = "(centralized policy quarantine)"
RELEASE_START_NOTE = "on release from Centralized Policy Quarantine"
RELEASE_DONE_NOTE = "(release from centralized policy quarantine)"
COPY_START_NOTE = "as a copy from Centralized Policy Quarantine"
COPY_DONE_NOTE = "(copy from centralized policy quarantine)"


def delivery_notes(meta: dict[str, Any]) -> tuple[str, str]:
    """The (start, done) notes of the delivery of a transfer whose metadata is *meta*."""
    if meta.get("kind") != Kind.RELEASE:
        return START_NOTE, DONE_NOTE
    release = meta.get("release")
    if isinstance(release, dict) and release.get("copy_of") is not None:
        return COPY_START_NOTE, COPY_DONE_NOTE
    return RELEASE_START_NOTE, RELEASE_DONE_NOTE


class CpqConnection(SmtpConnection):
    """An SMTP connection that is only usable once the peer proved it is CPQ."""

    def __init__(self, *, expect_role: str, expect_name: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expect_role = expect_role
        self.expect_name = expect_name

    async def open(self, host: str, port: int) -> None:
        await super().open(host, port)
        role = peer_role(self.peer_certificate)
        name = peer_common_name(self.peer_certificate)
        if self.expect_name is not None and (name or "").lower() != self.expect_name.lower():
            self.log.info(f"DCID {self.dcid} CPQ peer refused: certificate names {name!r}, "
                          f"expected {self.expect_name!r}")
            await self.close()
            raise DeliveryError(f"CPQ peer at {host}:{port} is {name!r}, not {self.expect_name}")
        if role != self.expect_role:
            self.log.info(f"DCID {self.dcid} CPQ peer refused: certificate is for role "
                          f"{role!r}, expected {self.expect_role!r}")
            await self.close()
            raise DeliveryError(f"CPQ peer at {host}:{port} is not a {self.expect_role}")
        if not self.supports("xcpq"):
            self.log.info(f"DCID {self.dcid} CPQ peer does not offer XCPQ")
            await self.close()
            raise DeliveryError(f"{host}:{port} does not speak CPQ (no XCPQ after STARTTLS)")


class CpqDestination(Destination):
    """`the.cpq.host` on a gateway, `the.cpq.release.host` on the manager."""

    holds_on_permanent_failure = True
    expires = False  # quarantined and released mail is never bounced for its age

    def __init__(self, name: str, *, resolve: Callable[[Entry], tuple[str, int] | None],
                 expect_role: str, tls_context: ssl.SSLContext, maillog: MailLog,
                 ids: IdAllocator, local_hostname: str, source_ip: str | None,
                 timeout_s: float, expect_name: str | None = None) -> None:
        self.name = name
        self.resolve = resolve
        self.expect_role = expect_role
        self.expect_name = expect_name
        self.tls_context = tls_context
        self.maillog = maillog
        self.ids = ids
        self.local_hostname = local_hostname
        self.source_ip = source_ip
        self.timeout_s = timeout_s

    def target(self, entry: Entry) -> Target | None:
        address = self.resolve(entry)
        if address is None:
            return None
        chunks = encode_chunks(entry.meta["cpq"])
        start, done = delivery_notes(entry.meta["cpq"])
        return Target(address[0], address[1], extra=[f"XCPQ META {c}" for c in chunks],
                      start_note=start, done_note=done)

    def connection(self) -> SmtpConnection:
        return CpqConnection(expect_role=self.expect_role, expect_name=self.expect_name,
                             maillog=self.maillog, ids=self.ids,
                             local_hostname=self.local_hostname, label=self.name,
                             tls=TlsPolicy(self.tls_context, required=True),
                             timeout_s=self.timeout_s, source_ip=self.source_ip)
