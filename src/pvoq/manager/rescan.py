"""Dry rescans from the manager: the origin gateway scans a held message, nothing changes.

`DryRescanner.rescan(mid)` (the `quarantine.service.Rescanner` the service's
`rescan` calls) opens a CPQ connection to the `cpq_listener` of the gateway
the message came from, exactly as a release does (mutual TLS, the server
certificate must be that gateway's, OU `gateway`, `XCPQ` offered), sends one
transaction of kind `rescan_request` with the held body, and reads the
verdict from the reply (`cpq.rescan`). Nothing is spooled or queued here,
and the gateway keeps nothing either.

Each failure is a `RescanFailed` naming the peer: the message did not come
from a registered gateway, the gateway is unreachable (connect, TLS, wrong
certificate), or its scanners could not decide (its `451`).
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable
from typing import Any

from pvoq.config.model import Config
from pvoq.cpq.bounds import MetadataError
from pvoq.cpq.client import CpqConnection
from pvoq.cpq.metadata import encode_chunks
from pvoq.cpq.rescan import read_verdict
from pvoq.cpq.transfer import Origin, QuarantineTransfer, RescanRequest
from pvoq.errors import OperatorError
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.client import DeliveryError, TlsPolicy


class RescanFailed(OperatorError):
    """A dry rescan could not be done: the text names the gateway and why (HTTP 502)."""

    status = 502


class DryRescanner:
    """Asks the origin gateway of a held message for a dry rescan (see module doc).

    *address* says where a gateway's `cpq_listener` is (the same as for a
    release); *tls* gives the client TLS context in force.
    """

    def __init__(self, *, config: Callable[[], Config], address: Callable[[str],
                 tuple[str, int] | None], tls: Callable[[], ssl.SSLContext],
                 ids: IdAllocator, maillog: MailLog, source_ip: Callable[[], str | None]
                 ) -> None:
        self.config = config
        self.address = address
        self.tls = tls
        self.ids = ids
        self.maillog = maillog
        self.source_ip = source_ip

    async def rescan(self, record: dict[str, Any], body: bytes) -> dict[str, Any]:
        """The verdict of the origin gateway on the held message *record* (`store.get`)."""
        cfg = self.config()
        mid = int(record["id"])
        stored = QuarantineTransfer.from_json(record["meta"])
        gateway = stored.origin.hostname
        if cfg.pvo.gateway(gateway) is None:
            raise RescanFailed(f"MID {mid} came from {gateway!r}, which is not a gateway "
                               "registered on this manager: nothing can rescan it")
        where = self.address(gateway)
        if where is None:
            raise RescanFailed(f"gateway {gateway}: no address known for its cpq_listener "
                               "(an SSH lookup was started; try again)")
        request = RescanRequest(
            transfer_id=f"s-{cfg.serial_number}-{mid}-{uuid.uuid4().hex[:12]}",
            origin=Origin(hostname=gateway, serial=stored.origin.serial,
                          mid=stored.origin.mid, icid=stored.origin.icid,
                          peer=stored.origin.peer),
            sender=stored.sender, recipients=stored.recipients, entry=mid)
        conn = CpqConnection(expect_role="gateway", expect_name=gateway, maillog=self.maillog,
                             ids=self.ids, local_hostname=cfg.hostname,
                             label=f"dry rescan {gateway}",
                             tls=TlsPolicy(self.tls(), required=True),
                             timeout_s=cfg.delivery.timeout_seconds,
                             source_ip=self.source_ip())
        host, port = where
        try:
            await conn.open(host, port)
            replies = await conn.send(
                mid=mid, sender=stored.sender,
                recipients=[(r.rid, r.address) for r in stored.recipients], body=body,
                extra=[f"XCPQ META {c}" for c in encode_chunks(request.to_json())],
                start_note="for a dry rescan", done_note="(dry rescan)")
        except DeliveryError as exc:
            raise RescanFailed(f"gateway {gateway} at {host}:{port} is unreachable: "
                               f"{exc.reason}") from None
        finally:
            await conn.close()
        reply = next(iter(replies.values()))
        text = " ".join(reply.text.splitlines()[:1])
        if not reply.ok:
            raise RescanFailed(f"gateway {gateway} could not rescan MID {mid}: "
                               f"{reply.code} {text[:300]}")
        try:
            verdict = read_verdict(reply.text)
        except MetadataError as exc:
            raise RescanFailed(f"gateway {gateway} answered without a usable verdict: "
                               f"{exc}") from None
        verdict["gateway"] = gateway
        return verdict
