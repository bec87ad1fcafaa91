"""What a CPQ transfer says, as typed values: one frozen class per metadata kind.

The metadata of a transfer is a JSON object (docs/cpq.md); `cpq.metadata`
encodes it for the wire. This module owns its meaning:

- `QuarantineTransfer` (kind `quarantine`): a gateway hands a caught message
  to the manager, naming the quarantines it goes to (`QuarantineRef`).
- `ReleaseTransfer` (kind `release`): the manager sends a released message
  back to the gateway that caught it; `ReleasePart` says which manager entry
  it was and which scan stages it already went through.
- `RescanNotice` (kind `outbreak_rescan`): a gateway's decision on a message
  it rescanned in "Outbreak" (`RescanAction`: release, extend or delete).
- `RescanRequest` (kind `rescan_request`): the manager asks the gateway a
  held message came from to scan it with today's rules, storing nothing; the
  verdict comes back in the reply (`cpq.rescan`).
- `ReleaseReceipt` (kind `release_receipt`): what became of a released
  message on its gateway (`ReceiptOutcome` per recipient: delivered, bounced
  or expired, the downstream host and its reply).
- `ReleaseReceipts` (kind `release_receipts`): several release receipts of
  one gateway in one transfer, to a manager offering `XCPQ-RECEIPTS`.
- `MigrationTransfer` (kind `migration`): a message held in a gateway's local
  quarantines moves to the manager's (`MigrationPart`: per local quarantine
  its target, reason and retention clock (`MigratedHold`), and the local audit
  history of the message).

Each class has `from_json(obj)`, which checks exactly what version 1 requires
and raises `MetadataError` naming the offending field, and `to_json()`, which
gives back the JSON object as it travels (optional keys left out when absent).
`parse_transfer` reads any kind. Keys this side does not model (`scan_trace`'s
contents excepted, which is modelled) and optional fields holding a value of
another type than the one modelled are not refused: they are kept in the
object's `extra` mapping and written back unchanged, so a transfer read and
written again is the same JSON object.

Everything a transfer says is bounded (docs/cpq.md, "Limits"; `cpq.bounds`), so that what
the manager accepts it can also store, search and release: integers are
0 to 2^63-1 (SQLite's and PostgreSQL's 64-bit integers), numbers finite,
other strings and lists of a bounded length, and the JSON nested at most
`MAX_DEPTH` deep. Addresses (254 octets, RFC 5321 4.5.3.1.3) and recipients
(1,000) have the bounds every SMTP listener applies (`smtp.limits`): what a
gateway accepted it can ship, and a release never carries what a gateway's
listener would refuse. A field outside its bounds is a `MetadataError` like
a missing one: it can never succeed, so the listener answers 554.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Self

from pvoq.cpq.bounds import (
    MAX_ADDRESS,
    MAX_DEPTH,
    MAX_INT,
    MAX_NAME,
    MAX_QUARANTINES,
    MAX_RECIPIENTS,
    MAX_SECONDS,
    MAX_SHORT,
    MAX_TEXT,
    MAX_TRACE,
    Fields,
    MetadataError,
    check_json,
    fit_text,
    with_extra,
    with_optional,
)

__all__ = ["MAX_ADDRESS", "MAX_DEPTH", "MAX_INT", "MAX_NAME", "MAX_QUARANTINES",
           "MAX_RECIPIENTS", "MAX_SECONDS", "MAX_SHORT", "MAX_TEXT", "MAX_TRACE",
           "MetadataError", "check_json", "fit_text"]


VERSION = 1

class Kind(StrEnum):
    """What a transfer is (its `kind`)."""

    QUARANTINE = "quarantine"
    RELEASE = "release"
    OUTBREAK_RESCAN = "outbreak_rescan"  # a gateway's rescan decision on an Outbreak message
    RELEASE_RECEIPT = "release_receipt"  # a released message's final outcome, to the manager
    RELEASE_RECEIPTS = "release_receipts"  # several release receipts in one transfer
    RESCAN_REQUEST = "rescan_request"    # the manager asks a gateway to scan a held copy, dry
    MIGRATION = "migration"              # a locally held message moves to the manager


class RescanAction(StrEnum):
    """What the manager does with a message an outbreak rescan decided on."""

    RELEASE = "release"  # release it from "Outbreak" (as "rescanned")
    EXTEND = "extend"    # keep it until `rescanned_at + retention_s`
    DELETE = "delete"    # delete it from "Outbreak"


@dataclass(frozen=True)
class Origin:
    """The gateway a message was caught on, and its MID and connection there."""

    hostname: str
    serial: str
    mid: int
    icid: int | None = None   # the injection connection (quarantine transfers)
    peer: str | None = None   # the sending client's IP address (quarantine transfers)
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        f = Fields(obj, "origin.")
        return cls(hostname=f.text("hostname", MAX_NAME), serial=f.text("serial", MAX_SHORT),
                   mid=f.require("mid", int), icid=f.optional("icid", int),
                   peer=f.text("peer", MAX_NAME, optional=True), extra=f.extra())

    def to_json(self) -> dict[str, Any]:
        known = with_optional({"hostname": self.hostname, "serial": self.serial, "mid": self.mid},
                          icid=self.icid, peer=self.peer)
        return with_extra(known, self.extra)


@dataclass(frozen=True)
class TransferRecipient:
    """One recipient of a transferred message: its RID on the gateway, and address."""

    rid: int
    address: str
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        if not isinstance(obj, dict):
            raise MetadataError("recipients[] must be objects")
        f = Fields(obj, "recipients[].")
        return cls(rid=f.require("rid", int), address=f.address("address"), extra=f.extra())

    def to_json(self) -> dict[str, Any]:
        return with_extra({"rid": self.rid, "address": self.address}, self.extra)


@dataclass(frozen=True)
class QuarantineRef:
    """An entry of `quarantines[]`: a quarantine the message goes to, and why."""

    name: str
    reason: str                       # e.g. `content filter:confidential_subject`
    stage: str                        # the scan stage that decided it
    detail: str | None = None         # the stage's own words (`a/v verdict:VIRAL ...`)
    retention_s: float | None = None  # a retention other than the quarantine's own
    threat_level: int | None = None   # Outbreak Filters' threat level
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Built by a gateway from a verdict: cut to what the manager accepts (`fit_text`).
        object.__setattr__(self, "reason", fit_text(self.reason))
        if self.detail is not None:
            object.__setattr__(self, "detail", fit_text(self.detail))

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        if not isinstance(obj, dict):
            raise MetadataError("quarantines[] must be objects")
        f = Fields(obj, "quarantines[].")
        return cls(name=f.text("name", MAX_NAME), reason=f.prose("reason"),
                   stage=f.text("stage", MAX_SHORT),
                   detail=f.prose("detail", optional=True),
                   retention_s=f.optional("retention_s", (int, float)),
                   threat_level=f.optional("threat_level", int), extra=f.extra())

    def to_json(self) -> dict[str, Any]:
        known = with_optional({"name": self.name, "reason": self.reason, "stage": self.stage},
                          detail=self.detail, retention_s=self.retention_s,
                          threat_level=self.threat_level)
        return with_extra(known, self.extra)


@dataclass(frozen=True)
class TraceStep:
    """One scan stage's outcome in `scan_trace` (what the manager may show as the why)."""

    stage: str
    outcome: str
    hits: tuple[str, ...] = ()
    misses: tuple[str, ...] = ()

    @classmethod
    def read(cls, obj: Any) -> Self | None:
        """The step, or None when *obj* is not one (then `scan_trace` is kept as received)."""
        if not (isinstance(obj, dict) and set(obj) == {"stage", "outcome", "hits", "misses"}
                and isinstance(obj["stage"], str) and isinstance(obj["outcome"], str)
                and all(isinstance(obj[k], list) and all(isinstance(s, str) for s in obj[k])
                        for k in ("hits", "misses"))):
            return None
        return cls(obj["stage"], obj["outcome"], tuple(obj["hits"]), tuple(obj["misses"]))

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "outcome": self.outcome, "hits": list(self.hits),
                "misses": list(self.misses)}


def _scan_trace(f: Fields) -> tuple[TraceStep, ...] | None:
    raw = f.optional("scan_trace", list)
    if raw is None:
        return None
    if len(raw) > MAX_TRACE or any(
            isinstance(s, dict) and isinstance(s.get(k), list) and len(s[k]) > MAX_TRACE
            for s in raw for k in ("hits", "misses")):
        raise MetadataError(f"field scan_trace has more than {MAX_TRACE} items")
    steps = [TraceStep.read(s) for s in raw]
    if not all(steps):
        f.taken.discard("scan_trace")
        return None
    return tuple(s for s in steps if s is not None)


def _header(obj: Any, kind: Kind | None) -> tuple[Fields, Kind, str, Origin]:
    """The fields every kind has (`v`, `kind`, `transfer_id`, `origin`), checked in order.

    *kind*, when given, is the one the caller reads: another valid kind is refused.
    """
    check_json(obj)
    f = Fields(obj, "")
    version = f.require("v", int)
    if version != VERSION:
        raise MetadataError(f"unsupported metadata version {version} (this side speaks {VERSION})")
    name = f.require("kind", str)
    if name not in Kind.__members__.values():
        raise MetadataError(f"unknown kind {name!r}")
    if kind is not None and name != kind:
        raise MetadataError(f"a {kind} transfer was expected, not {name!r}")
    transfer_id = f.no_nul("transfer_id", f.require("transfer_id", str))
    if not 8 <= len(transfer_id) <= 128:
        raise MetadataError("transfer_id must be 8 to 128 characters")
    origin = Origin.from_json(f.require("origin", dict))
    return f, Kind(name), transfer_id, origin


def _head_json(kind: Kind, transfer_id: str, origin: Origin) -> dict[str, Any]:
    return {"v": VERSION, "kind": kind.value, "transfer_id": transfer_id,
            "origin": origin.to_json()}


@dataclass(frozen=True)
class _Message:
    """The parts a quarantine and a release transfer share: the message and its envelope."""

    transfer_id: str
    origin: Origin
    sender: str
    recipients: tuple[TransferRecipient, ...]
    quarantines: tuple[QuarantineRef, ...]
    received: float   # when the gateway accepted it (epoch seconds)
    size: int         # bytes

    @staticmethod
    def _read(f: Fields, kind: Kind) -> dict[str, Any]:
        sender = f.address("sender", empty=True)
        raw_recipients = f.items("recipients", MAX_RECIPIENTS)
        if not raw_recipients:
            raise MetadataError("recipients is empty")
        recipients = tuple(TransferRecipient.from_json(r) for r in raw_recipients)
        raw_quarantines = f.items("quarantines", MAX_QUARANTINES)
        if kind == Kind.QUARANTINE and not raw_quarantines:
            raise MetadataError("a quarantine transfer names at least one quarantine")
        quarantines = tuple(QuarantineRef.from_json(q) for q in raw_quarantines)
        return {"sender": sender, "recipients": recipients, "quarantines": quarantines,
                "received": f.require("received", (int, float)), "size": f.require("size", int)}

    def _json(self, kind: Kind) -> dict[str, Any]:
        return {**_head_json(kind, self.transfer_id, self.origin), "sender": self.sender,
                "recipients": [r.to_json() for r in self.recipients],
                "quarantines": [q.to_json() for q in self.quarantines],
                "received": self.received, "size": self.size}


@dataclass(frozen=True)
class QuarantineTransfer(_Message):
    """A message a gateway caught, for the manager's quarantines (kind `quarantine`)."""

    kind: ClassVar[Kind] = Kind.QUARANTINE
    scan_trace: tuple[TraceStep, ...] | None = None  # every stage's hits and misses
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        f, _, transfer_id, origin = _header(obj, cls.kind)
        parts = cls._read(f, cls.kind)
        return cls(transfer_id=transfer_id, origin=origin, **parts, scan_trace=_scan_trace(f),
                   extra=f.extra())

    def to_json(self) -> dict[str, Any]:
        known = self._json(self.kind)
        if self.scan_trace is not None:
            known["scan_trace"] = [s.to_json() for s in self.scan_trace]
        return with_extra(known, self.extra)


@dataclass(frozen=True)
class ReleasePart:
    """The `release` object of a release transfer."""

    entry: int                                 # the message's MID on the manager
    stages: tuple[str, ...]                    # the scan stages that quarantined it
    quarantines: tuple[str, ...] | None = None  # the manager's quarantines it was held in
    copy_of: int | None = None                  # a Send Copy: the held message's manager MID
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        f = Fields(obj, "release.")
        entry = f.require("entry", int)
        stages = f.items("stages", MAX_QUARANTINES)
        if not all(isinstance(s, str) for s in stages):
            raise MetadataError("release.stages[] must be strings")
        if any(len(s) > MAX_SHORT for s in stages):
            raise MetadataError(f"release.stages[] must be at most {MAX_SHORT} characters")
        names = f.optional("quarantines", list)
        if names is not None and not all(isinstance(n, str) for n in names):
            f.taken.discard("quarantines")
            names = None
        copy_of = f.optional("copy_of", int)
        return cls(entry=entry, stages=tuple(stages),
                   quarantines=None if names is None else tuple(names), copy_of=copy_of,
                   extra=f.extra())

    def to_json(self) -> dict[str, Any]:
        known: dict[str, Any] = {"entry": self.entry, "stages": list(self.stages)}
        if self.quarantines is not None:
            known["quarantines"] = list(self.quarantines)
        if self.copy_of is not None:
            known["copy_of"] = self.copy_of
        return with_extra(known, self.extra)


@dataclass(frozen=True)
class ReleaseTransfer(_Message):
    """A released message, back to the gateway that caught it (kind `release`)."""

    kind: ClassVar[Kind] = Kind.RELEASE
    release: ReleasePart
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        f, _, transfer_id, origin = _header(obj, cls.kind)
        parts = cls._read(f, cls.kind)
        release = ReleasePart.from_json(f.require("release", dict))
        return cls(transfer_id=transfer_id, origin=origin, **parts, release=release,
                   extra=f.extra())

    def to_json(self) -> dict[str, Any]:
        known = self._json(self.kind)
        known["release"] = self.release.to_json()
        return with_extra(known, self.extra)


@dataclass(frozen=True)
class RescanNotice:
    """A gateway's decision on a message it rescanned in "Outbreak" (kind `outbreak_rescan`).

    `origin` names the quarantined message as its quarantine transfer did;
    `quarantine_transfer_id` is that transfer's id.
    """

    kind: ClassVar[Kind] = Kind.OUTBREAK_RESCAN
    transfer_id: str
    origin: Origin
    quarantine_transfer_id: str
    quarantine: str
    action: RescanAction
    reason: str
    rescanned_at: float
    retention_s: float | None = None    # required for `extend`: kept until rescanned_at + this
    rules_version: str | None = None    # the Outbreak rules the rescan used
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", fit_text(self.reason))  # as `QuarantineRef`

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        f, _, transfer_id, origin = _header(obj, cls.kind)
        quarantine_transfer_id = f.text("quarantine_transfer_id", 128)
        quarantine = f.text("quarantine", MAX_NAME)
        action = f.require("action", str)
        if action not in RescanAction.__members__.values():
            raise MetadataError(f"unknown rescan action {action!r}")
        reason = f.prose("reason")
        rescanned_at = f.require("rescanned_at", (int, float))
        if action == RescanAction.EXTEND:
            retention_s = f.require("retention_s", (int, float))
        else:
            retention_s = f.optional("retention_s", (int, float))
        return cls(transfer_id=transfer_id, origin=origin,
                   quarantine_transfer_id=quarantine_transfer_id, quarantine=quarantine,
                   action=RescanAction(action), reason=reason, rescanned_at=rescanned_at,
                   retention_s=retention_s, rules_version=f.text("rules_version", MAX_NAME, optional=True),
                   extra=f.extra())

    def to_json(self) -> dict[str, Any]:
        known = {**_head_json(self.kind, self.transfer_id, self.origin),
                 "quarantine_transfer_id": self.quarantine_transfer_id,
                 "quarantine": self.quarantine, "action": self.action.value,
                 "reason": self.reason}
        if self.rules_version is not None:
            known["rules_version"] = self.rules_version
        known["rescanned_at"] = self.rescanned_at
        if self.retention_s is not None:
            known["retention_s"] = self.retention_s
        return with_extra(known, self.extra)


class Outcome(StrEnum):
    """How a released message's delivery ended for one recipient (a release receipt)."""

    DELIVERED = "delivered"  # the downstream host answered 2xx
    BOUNCED = "bounced"      # it answered 5xx
    EXPIRED = "expired"      # it waited longer than the maximum time in queue


MAX_REPLY = 512  # octets of a downstream reply in a receipt (its text is the peer's)


@dataclass(frozen=True)
class ReceiptOutcome:
    """An entry of a receipt's `outcomes[]`: one recipient's final outcome."""

    rid: int
    address: str
    outcome: Outcome
    host: str          # the downstream host (`host` or `host:port`) it was delivered to
    reply: str         # that host's reply, or the expiry's reason
    at: float          # when (epoch seconds)

    def __post_init__(self) -> None:
        # Built by a gateway from what a downstream host said: cut to what the manager takes.
        object.__setattr__(self, "host", fit_text(self.host, MAX_NAME))
        object.__setattr__(self, "reply", fit_text(self.reply, MAX_REPLY))

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        if not isinstance(obj, dict):
            raise MetadataError("outcomes[] must be objects")
        f = Fields(obj, "outcomes[].")
        outcome = f.require("outcome", str)
        if outcome not in Outcome.__members__.values():
            raise MetadataError(f"unknown outcome {outcome!r}")
        host = f.require("host", str)
        reply = f.require("reply", str)
        for name, value, limit in (("host", host, MAX_NAME), ("reply", reply, MAX_REPLY)):
            if len(value.encode("utf-8", "surrogatepass")) > limit:
                raise MetadataError(f"field outcomes[].{name} is longer than {limit} octets")
        return cls(rid=f.require("rid", int), address=f.address("address"),
                   outcome=Outcome(outcome), host=host, reply=reply,
                   at=f.require("at", (int, float)))

    def to_json(self) -> dict[str, Any]:
        return {"rid": self.rid, "address": self.address, "outcome": self.outcome.value,
                "host": self.host, "reply": self.reply, "at": self.at}


@dataclass(frozen=True)
class ReleaseReceipt:
    """What became of a released message on its gateway (kind `release_receipt`).

    `origin` is the gateway and its MID of the message it delivered;
    `release_id` the transfer id of the release, `entry` the manager's MID
    (`copy_of`: the held message, for a Send Copy); `manager` the name of
    the manager the release came from.
    """

    kind: ClassVar[Kind] = Kind.RELEASE_RECEIPT
    transfer_id: str
    origin: Origin
    release_id: str
    entry: int
    outcomes: tuple[ReceiptOutcome, ...]
    copy_of: int | None = None
    manager: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def message(self) -> int:
        """The manager's MID of the quarantined message this receipt is about."""
        return self.copy_of if self.copy_of is not None else self.entry

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        f, _, transfer_id, origin = _header(obj, cls.kind)
        release = Fields(f.require("release", dict), "release.")
        raw = f.items("outcomes", MAX_RECIPIENTS)
        if not raw:
            raise MetadataError("outcomes is empty")
        receipt = cls(transfer_id=transfer_id, origin=origin,
                      release_id=release.text("transfer_id", 128),
                      entry=release.require("entry", int),
                      copy_of=release.optional("copy_of", int),
                      outcomes=tuple(ReceiptOutcome.from_json(o) for o in raw),
                      manager=f.text("manager", MAX_NAME, optional=True), extra=f.extra())
        return receipt

    def to_json(self) -> dict[str, Any]:
        release: dict[str, Any] = {"transfer_id": self.release_id, "entry": self.entry}
        if self.copy_of is not None:
            release["copy_of"] = self.copy_of
        known = {**_head_json(self.kind, self.transfer_id, self.origin), "release": release,
                 "outcomes": [o.to_json() for o in self.outcomes]}
        if self.manager is not None:
            known["manager"] = self.manager
        return with_extra(known, self.extra)


MAX_RECEIPTS = 1000  # release receipts one `release_receipts` transfer carries at most


@dataclass(frozen=True)
class ReleaseReceipts:
    """Several release receipts of one gateway in one transfer (kind `release_receipts`).

    Each of `receipts` is a whole `release_receipt` object, recorded on its own
    terms (idempotent per entry); all of them come from `origin.hostname`.
    """

    kind: ClassVar[Kind] = Kind.RELEASE_RECEIPTS
    transfer_id: str
    origin: Origin
    receipts: tuple[ReleaseReceipt, ...]
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        f, _, transfer_id, origin = _header(obj, cls.kind)
        raw = f.items("receipts", MAX_RECEIPTS)
        if not raw:
            raise MetadataError("receipts is empty")
        receipts = tuple(ReleaseReceipt.from_json(r) for r in raw)
        for receipt in receipts:
            if receipt.origin.hostname.lower() != origin.hostname.lower():
                raise MetadataError(f"receipts[].origin.hostname {receipt.origin.hostname!r} "
                                    f"is not origin.hostname {origin.hostname!r}")
        return cls(transfer_id=transfer_id, origin=origin, receipts=receipts, extra=f.extra())

    def to_json(self) -> dict[str, Any]:
        known = {**_head_json(self.kind, self.transfer_id, self.origin),
                 "receipts": [r.to_json() for r in self.receipts]}
        return with_extra(known, self.extra)


@dataclass(frozen=True)
class RescanRequest:
    """The manager asks the origin gateway to scan a held message, storing nothing (kind
    `rescan_request`): `origin`, `sender` and `recipients` are the stored message's,
    `entry` its manager MID. Version 1 knows only dry runs (`dry_run` must be true)."""

    kind: ClassVar[Kind] = Kind.RESCAN_REQUEST
    transfer_id: str
    origin: Origin
    sender: str
    recipients: tuple[TransferRecipient, ...]
    entry: int
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        f, _, transfer_id, origin = _header(obj, cls.kind)
        sender = f.address("sender", empty=True)
        raw = f.items("recipients", MAX_RECIPIENTS)
        if not raw:
            raise MetadataError("recipients is empty")
        rescan = Fields(f.require("rescan", dict), "rescan.")
        entry = rescan.require("entry", int)
        if rescan.require("dry_run", bool) is not True:
            raise MetadataError("rescan.dry_run must be true (only dry runs exist)")
        return cls(transfer_id=transfer_id, origin=origin, sender=sender,
                   recipients=tuple(TransferRecipient.from_json(r) for r in raw),
                   entry=entry, extra=f.extra())

    def to_json(self) -> dict[str, Any]:
        known = {**_head_json(self.kind, self.transfer_id, self.origin), "sender": self.sender,
                 "recipients": [r.to_json() for r in self.recipients],
                 "rescan": {"entry": self.entry, "dry_run": True}}
        return with_extra(known, self.extra)


MAX_AUDIT = 1000  # audit records one migrated message carries (the oldest are dropped)


@dataclass(frozen=True)
class MigratedHold:
    """An entry of `migration.held[]`: one local quarantine holding the message, the
    central quarantine it goes to, and its retention clock there."""

    local: str             # the local quarantine's name
    target: str            # the central quarantine it moves to
    reason: str
    stage: str
    received_at: float     # when it entered the local quarantine (the retention clock)
    scheduled_exit: float  # when its default action is due

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        f = Fields(obj, "migration.held[].")
        return cls(local=f.text("local", MAX_NAME), target=f.text("target", MAX_NAME),
                   reason=f.prose("reason"), stage=f.text("stage", MAX_SHORT),
                   received_at=f.require("received_at", (int, float)),
                   scheduled_exit=f.require("scheduled_exit", (int, float)))

    def to_json(self) -> dict[str, Any]:
        return {"local": self.local, "target": self.target, "reason": self.reason,
                "stage": self.stage, "received_at": self.received_at,
                "scheduled_exit": self.scheduled_exit}


@dataclass(frozen=True)
class MigrationPart:
    """The `migration` object: the plan it belongs to, where it is held, its history."""

    plan: str                             # the migration plan's id
    held: tuple[MigratedHold, ...]
    audit: tuple[dict[str, Any], ...] = ()  # the local audit records naming the message

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        f = Fields(obj, "migration.")
        plan = f.text("plan", 128)
        raw = f.items("held", MAX_QUARANTINES)
        if not raw:
            raise MetadataError("migration.held is empty")
        audit = f.items("audit", MAX_AUDIT) if "audit" in obj else []
        if not all(isinstance(a, dict) for a in audit):
            raise MetadataError("migration.audit[] must be objects")
        return cls(plan=plan, held=tuple(MigratedHold.from_json(h) for h in raw),
                   audit=tuple(audit))

    def to_json(self) -> dict[str, Any]:
        return {"plan": self.plan, "held": [h.to_json() for h in self.held],
                "audit": list(self.audit)}


@dataclass(frozen=True)
class MigrationTransfer(_Message):
    """A message held locally on a gateway, moved to the manager (kind `migration`).

    `quarantines` names the central quarantines (`migration.held[].target`),
    `received` the original arrival on the gateway, `origin.mid` the local MID.
    """

    kind: ClassVar[Kind] = Kind.MIGRATION
    migration: MigrationPart
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        f, _, transfer_id, origin = _header(obj, cls.kind)
        parts = cls._read(f, Kind.QUARANTINE)  # at least one quarantine, as a quarantine
        migration = MigrationPart.from_json(f.require("migration", dict))
        targets = {q.name for q in parts["quarantines"]}
        stray = [h.target for h in migration.held if h.target not in targets]
        if stray:
            raise MetadataError(f"migration.held[].target {stray[0]!r} is not in quarantines")
        return cls(transfer_id=transfer_id, origin=origin, **parts, migration=migration,
                   extra=f.extra())

    def to_json(self) -> dict[str, Any]:
        known = self._json(self.kind)
        known["migration"] = self.migration.to_json()
        return with_extra(known, self.extra)


Transfer = (QuarantineTransfer | ReleaseTransfer | RescanNotice | ReleaseReceipt | RescanRequest
            | MigrationTransfer | ReleaseReceipts)

_BY_KIND: dict[Kind, type[QuarantineTransfer] | type[ReleaseTransfer] | type[RescanNotice]
               | type[ReleaseReceipt] | type[RescanRequest] | type[MigrationTransfer]
               | type[ReleaseReceipts]] = {
    Kind.RELEASE_RECEIPTS: ReleaseReceipts,
    Kind.QUARANTINE: QuarantineTransfer, Kind.RELEASE: ReleaseTransfer,
    Kind.OUTBREAK_RESCAN: RescanNotice, Kind.RELEASE_RECEIPT: ReleaseReceipt,
    Kind.RESCAN_REQUEST: RescanRequest, Kind.MIGRATION: MigrationTransfer,
}


def parse_transfer(obj: Any) -> Transfer:
    """The typed transfer *obj* (a decoded JSON value) is; MetadataError unless well-formed."""
    _, kind, _, _ = _header(obj, None)
    return _BY_KIND[kind].from_json(obj)
