"""The sending side of CPQ: a delivery destination for `the.cpq.host` and
`the.cpq.release.host`.

Every connection requires STARTTLS with a verified CPQ certificate (see
`smtp.client`) and the `XCPQ` EHLO keyword; each transaction sends the
entry's metadata as `XCPQ META` chunks between RCPT and DATA.

A gateway may list several managers (`CpqPeer`s, in order): a connection of
its `the.cpq.host` tries them in turn and the first that answers and proves
its registered name takes the mail (`DCID n CPQ peer NAME ...` says which). A
manager that failed is skipped for a back-off of its own (`PeerBackoff`,
doubling like the delivery retries) while another answers, so a dead first
manager costs no connection attempt per message.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pvoq.cpq.ca import peer_common_name, peer_role
from pvoq.cpq.metadata import encode_chunks
from pvoq.cpq.transfer import Kind
from pvoq.delivery.backoff import retry_delay
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


@dataclass(frozen=True)
class CpqPeer:
    """One CPQ peer a connection may use: where it listens and the name its certificate
    must carry (None: any certificate of the expected role)."""

    host: str
    port: int
    name: str | None = None

    @property
    def label(self) -> str:
        where = f"{self.host}:{self.port}"
        return f"{self.name} ({where})" if self.name else where


@dataclass
class _PeerState:
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""


class PeerBackoff:
    """Per-peer back-off, shared by the connections of one destination.

    A peer that failed waits until its retry time (*min_s* doubling up to
    *max_s*, as `delivery.backoff` does): it comes after every peer that does
    not wait, so it is tried only when all of those failed too, and a
    delivery never stops for want of a candidate. A success forgets its
    failures.
    """

    def __init__(self, *, min_s: float, max_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_s, self.max_s, self.clock = min_s, max_s, clock
        self._state: dict[CpqPeer, _PeerState] = {}

    def order(self, peers: Sequence[CpqPeer]) -> list[CpqPeer]:
        """The order to try *peers* in now: those not waiting, in their configured order,
        then those waiting, the one due first first."""
        now = self.clock()
        ready = [p for p in peers if self._of(p).retry_at <= now]
        waiting = sorted((p for p in peers if self._of(p).retry_at > now),
                         key=lambda p: self._of(p).retry_at)
        return ready + waiting

    def failed(self, peer: CpqPeer, reason: str) -> float:
        """Record a failure of *peer*; the seconds until it is tried again."""
        state = self._of(peer)
        now = self.clock()
        state.last_error = reason
        if state.retry_at > now:  # a concurrent connection counted this outage already
            return state.retry_at - now
        state.failures += 1
        delay = retry_delay(state.failures, min_s=self.min_s, max_s=self.max_s)
        state.retry_at = now + delay
        return delay

    def succeeded(self, peer: CpqPeer) -> None:
        self._state[peer] = _PeerState()

    def describe(self, peers: Sequence[CpqPeer]) -> list[dict[str, Any]]:
        """Each peer's state for `hoststatus`: failures, seconds to its next try, last error."""
        now = self.clock()
        return [{"peer": p.label, "failures": self._of(p).failures,
                 "retry_in": max(0.0, self._of(p).retry_at - now) if self._of(p).failures
                 else 0.0, "last_error": self._of(p).last_error} for p in peers]

    def _of(self, peer: CpqPeer) -> _PeerState:
        return self._state.setdefault(peer, _PeerState())


class CpqConnection(SmtpConnection):
    """An SMTP connection that is only usable once the peer proved it is CPQ.

    With *peers* (and their *backoff*), `open` tries the peers `backoff.order`
    names, in turn, each verified against its own name; `peer` is the one that
    answered. The address it is given only matters when it is that of a peer
    other than the first: that peer is then tried first (a release receipt goes
    to the manager the release came from).
    """

    def __init__(self, *, expect_role: str, expect_name: str | None = None,
                 peers: Sequence[CpqPeer] = (), backoff: PeerBackoff | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("pipeline_transactions", True)  # the peer is pvoq: BDAT in flight
        super().__init__(**kwargs)
        self.expect_role = expect_role
        self.expect_name = expect_name
        self.peers = tuple(peers)
        self.backoff = backoff
        self.peer: CpqPeer | None = None

    async def open(self, host: str, port: int) -> None:
        if not self.peers:
            await self._open_verified(host, port)
            return
        backoff = self.backoff or PeerBackoff(min_s=0.0, max_s=0.0)
        failures: list[str] = []
        last: DeliveryError | None = None
        order = backoff.order(self.peers)
        preferred = [p for p in self.peers[1:] if (p.host, p.port) == (host, port)]
        if preferred:  # mail pinned to another listed peer (a release receipt): it first
            order = preferred[:1] + [p for p in order if p != preferred[0]]
        for peer in order:
            self.expect_name = peer.name
            try:
                await self._open_verified(peer.host, peer.port)
            except DeliveryError as exc:
                last = exc
                delay = backoff.failed(peer, exc.reason)
                failures.append(f"{peer.label}: {exc.reason}")
                if len(self.peers) > 1:
                    self.log.info(f"DCID {self.dcid} CPQ peer {peer.label} failed: "
                                  f"{exc.reason}; next tried in {delay:.0f}s")
                continue
            backoff.succeeded(peer)
            self.peer = peer
            index = self.peers.index(peer) + 1
            self.log.info(f"DCID {self.dcid} CPQ peer {peer.label} verified "
                          f"({self.expect_role} {index} of {len(self.peers)})")
            return
        if last is not None and len(self.peers) == 1:
            raise last
        raise DeliveryError(f"no {self.expect_role} answered: " + "; ".join(failures))

    async def _open_verified(self, host: str, port: int) -> None:
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
                 timeout_s: float, expect_name: str | None = None,
                 peers: Sequence[CpqPeer] = (), backoff: PeerBackoff | None = None) -> None:
        self.name = name
        self.resolve = resolve
        self.expect_role = expect_role
        self.expect_name = expect_name
        self.peers = tuple(peers)  # several: each connection tries them in turn
        self.backoff = backoff or PeerBackoff(min_s=0.0, max_s=0.0)
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
                             peers=self.peers, backoff=self.backoff, maillog=self.maillog, ids=self.ids,
                             local_hostname=self.local_hostname, label=self.name,
                             tls=TlsPolicy(self.tls_context, required=True),
                             timeout_s=self.timeout_s, source_ip=self.source_ip)

    def peer_status(self) -> list[dict[str, Any]]:
        """The state of each peer this destination tries, when it tries several."""
        return self.backoff.describe(self.peers) if len(self.peers) > 1 else []
