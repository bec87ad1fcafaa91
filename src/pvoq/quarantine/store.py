"""The quarantine store: metadata in SQL (SQLAlchemy Core), bodies on disk or in SQL.

A message arrives once per transfer id (`messages.transfer_id` is unique: a
retry after a lost `250` finds the row and stores nothing). Its body is
written and fsync'd (or inserted in the same transaction) before the row is
committed. A body goes in the database (`message_bodies`, its row's
`body_path` empty) when the store keeps its bodies there, and on a disk store
when it is small (up to `inline_max` bytes, `INLINE_BODY_MAX` by default):
a 10 KB message then costs no file, no fdatasync of its own and no unlink;
larger bodies are files of the bodies directory. The row is committed
before CPQ answers `250`; the arrivals in flight together share that work
(group commit: `intake`, `arrivals`). The reads (search, get) are `views`.

A message sits in one or more quarantines (`message_quarantines`). AsyncOS
semantics: it is delivered only once released from all of them, and never
once deleted from one. Every state change is a conditional `UPDATE ...
WHERE state = 'held'`, so when several manager processes share one
PostgreSQL database an action (or an expiry) is applied by exactly one of
them; the message's settlement is then *claimed* (`held` → `settling`) by
exactly one process, which queues the release or drops the body and calls
`finish`.

This module never talks to the network and never reads the wall clock
directly: the clock is injected.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, delete, exists, func, not_, or_, select, update
from sqlalchemy.engine import Connection, Engine

from pvoq.errors import NotFound
from pvoq.fsutil import remove_durably
from pvoq.quarantine import words
from pvoq.quarantine.arrivals import INLINE_BODY_MAX
from pvoq.quarantine.migrate import migrate
from pvoq.quarantine.schema import (
    ALL_HELD,
    HELD_BYTES,
    attachments,
    fts,
    held_counts,
    make_engine,
    message_bodies,
    message_quarantines,
    message_recipients,
    messages,
    quarantines,
)
from pvoq.quarantine.settings import (
    DELETE,
    OverflowCandidate,
    QuarantineSettings,
    builtin_defaults,
)
from pvoq.quarantine.states import ACTION_STATE as ACTION_STATE
from pvoq.quarantine.states import BUILTINS, BuiltinQuarantine, State
from pvoq.quarantine.views import Views

HELD = State.HELD
SETTLING = State.SETTLING
RELEASED = State.RELEASED
DELETED = State.DELETED
BUILTIN_QUARANTINES = BUILTINS
STALE_CLAIM_S = 300.0


@dataclass(frozen=True)
class Outcome:
    """What an action did: from which quarantines, and whether this process settles it."""

    mid: int
    acted_on: tuple[str, ...]
    settled: str | None  # RELEASED or DELETED when this process claimed the settlement


class QuarantineError(NotFound):
    """An action names a message or quarantine that does not hold it."""


class QuarantineStore(Views):
    """The quarantined messages of one manager (or of several sharing PostgreSQL).

    Rows and bodies (see the module docstring for durability and the
    conditional updates): `add` stores a transfer once, `act`/`act_many`,
    `delay`, `move` change a message's quarantines, `claim_settlement`,
    `reclaim` and `finish` hand a settled message to exactly one process;
    `search`, `get`, `counts`, `held_count`, `used_bytes`, `due` and
    `overflow_candidates` are the reads. `settings` are the effective
    quarantines (`sync_quarantines` applies a new configuration's). Roles,
    audit and mail_logs lines are the `QuarantineService`'s business.
    """

    def __init__(self, url: str, bodies_dir: Path, *, bodies: str = "disk",
                 inline_max: int = INLINE_BODY_MAX, node: str = "manager",
                 clock: Callable[[], float] = time.time,
                 settings: dict[str, QuarantineSettings] | None = None,
                 create: bool = True) -> None:
        self.engine: Engine = make_engine(url)
        if create:
            migrate(self.engine)
        self.bodies = Path(bodies_dir)
        self.bodies_in_db = bodies == "database"
        self.inline_max = inline_max
        if not self.bodies_in_db:
            self.bodies.mkdir(parents=True, exist_ok=True)
        self.node = node
        self.clock = clock
        self.settings: dict[str, QuarantineSettings] = settings or builtin_defaults()
        self._committer = None
        self._pool = None
        self._prune_after: tuple[str, str] = ("", "")  # where the dictionary's pruning is

    def close(self) -> None:
        """Commit the arrivals handed in, stop the writer, close the database."""
        self.close_intake()
        self.engine.dispose()

    # -- quarantine definitions ------------------------------------------------
    def sync_quarantines(self, settings: dict[str, QuarantineSettings]
                         ) -> builtins.list[tuple[int, str, str]]:
        """Record *settings*; a quarantine no longer configured is deleted.

        Returns `(mid, quarantine, default action)` for each message held in a
        deleted quarantine: the caller applies that action (AsyncOS applies the
        default action to the messages of a deleted quarantine).
        """
        self.settings = dict(settings)
        pending: list[tuple[int, str, str]] = []
        insert = self._insert()
        with self.engine.begin() as conn:
            known = {r.name: r for r in conn.execute(select(quarantines))}
            for name, q in settings.items():
                values = dict(builtin=q.builtin, retention_s=q.retention_s,
                              default_action=q.default_action, overflow=q.overflow,
                              settings=q.to_json(), deleted=False)
                # An upsert: another manager starting at the same time may add it first.
                conn.execute(insert(quarantines).values(name=name, **values)
                             .on_conflict_do_update(index_elements=["name"], set_=values))
            have = {q for (q,) in conn.execute(select(held_counts.c.quarantine))}
            missing = [n for n in [*settings, ALL_HELD, HELD_BYTES] if n not in have]
            if missing:
                conn.execute(insert(held_counts).values([{"quarantine": n, "n": 0}
                                                         for n in missing])
                             .on_conflict_do_nothing())
            for name, row in known.items():
                if name in settings or row.deleted:
                    continue
                conn.execute(update(quarantines).where(quarantines.c.name == name)
                             .values(deleted=True))
                for (mid,) in conn.execute(select(message_quarantines.c.message_id).where(
                        message_quarantines.c.quarantine == name,
                        message_quarantines.c.state == HELD)):
                    pending.append((int(mid), name, row.default_action))
        return pending

    def _unindex(self, conn: Connection, mids: builtins.list[int]) -> None:
        """A message whose settlement is claimed leaves the search tables: they hold
        held mail only, so a match there needs no look at `messages.state`."""
        if not mids:
            return
        conn.execute(delete(message_recipients).where(message_recipients.c.message_id.in_(mids)))
        conn.execute(delete(attachments).where(attachments.c.message_id.in_(mids)))
        if self.dialect == "sqlite":
            for t in fts.values():
                conn.execute(delete(t).where(t.c.rowid.in_(mids)))
        else:
            words.unindex_words(conn, mids)

    def held_count(self, quarantine: str | None = None) -> int:
        """Messages held in *quarantine* (None: in any), from the maintained counters."""
        with self.engine.connect() as conn:
            n = conn.execute(select(held_counts.c.n).where(
                held_counts.c.quarantine == (quarantine or ALL_HELD))).scalar()
        return int(n or 0)

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per quarantine: (messages held, bytes held)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(message_quarantines.c.quarantine, func.count(), func.sum(messages.c.size))
                .join(messages, messages.c.id == message_quarantines.c.message_id)
                .where(message_quarantines.c.state == HELD)
                .group_by(message_quarantines.c.quarantine)).all()
        return {q: (int(n), int(size or 0)) for q, n, size in rows}

    def used_bytes(self) -> int:
        """Bytes of every message still held in any quarantine (a maintained counter)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(held_counts.c.n).where(
                held_counts.c.quarantine == HELD_BYTES)).scalar() or 0)

    def prune_vocabulary(self) -> int:
        """One chunk of the search dictionary pruned (PostgreSQL, `words.prune_vocabulary`):
        the words dropped that no held message has any more. Each call goes on where the
        last stopped; after the dictionary's end, from its start again."""
        if self.dialect == "sqlite":
            return 0  # the trigram tables hold held mail only: nothing to prune
        with self.engine.begin() as conn:
            dropped, after = words.prune_vocabulary(conn, self._prune_after)
        self._prune_after = after or ("", "")
        return dropped

    # -- actions -----------------------------------------------------------
    def act(self, mid: int, action: str, quarantine: str | None = None, *,
            how: str = "manual", quarantines_in: Iterable[str] | None = None) -> Outcome:
        """Release or delete *mid* from *quarantine* (or from all that hold it).

        Only rows still `held` change (a conditional update), so of two
        processes acting at once exactly one acts; the other gets
        QuarantineError. *quarantines_in* limits "all" to those quarantines
        (a role allowed only some of them).
        """
        if action not in (RELEASED, DELETED):
            raise ValueError(f"unknown action {action!r}")
        now = self.clock()
        mq = message_quarantines.c
        with self.engine.begin() as conn:
            if conn.execute(select(messages.c.id).where(messages.c.id == mid)).scalar() is None:
                raise QuarantineError(f"No message with MID {mid} in the quarantines.")
            stmt = update(message_quarantines).where(mq.message_id == mid, mq.state == HELD)
            if quarantine is not None:
                stmt = stmt.where(mq.quarantine == quarantine)
            if quarantines_in is not None:
                stmt = stmt.where(mq.quarantine.in_(builtins.list(quarantines_in)))
            acted = sorted(q for (q,) in conn.execute(
                stmt.values(state=action, acted_at=now, how=how).returning(mq.quarantine)))
            self._count(conn, dict.fromkeys(acted, -1))
        if not acted:
            where = f' "{quarantine}"' if quarantine else " any quarantine"
            raise QuarantineError(f"MID {mid} is not held in{where}.")
        return Outcome(mid, tuple(acted), self.claim_settlement(mid))

    def act_many(self, mids: Iterable[int], action: str, quarantine: str | None = None, *,
                 how: str = "manual", quarantines_in: Iterable[str] | None = None
                 ) -> builtins.list[Outcome]:
        """`act` on many messages: one transaction for the actions, one for the claims.

        The claims follow the commit of the actions (as in `act`), so that when
        two processes act on different quarantines of one message, the later
        of the two claims sees both actions and settles it.
        """
        if action not in (RELEASED, DELETED):
            raise ValueError(f"unknown action {action!r}")
        ids = builtins.list(mids)
        if not ids:
            return []
        mq = message_quarantines.c
        conds = [mq.message_id.in_(ids), mq.state == HELD]
        if quarantine is not None:
            conds.append(mq.quarantine == quarantine)
        if quarantines_in is not None:
            conds.append(mq.quarantine.in_(builtins.list(quarantines_in)))
        stmt = update(message_quarantines).where(*conds)
        acted: dict[int, list[str]] = {}
        with self.engine.begin() as conn:
            # Lock the rows in one order first: two processes acting on overlapping
            # sets then queue behind each other instead of deadlocking (PostgreSQL).
            conn.execute(select(mq.message_id).where(*conds)
                         .order_by(mq.message_id, mq.quarantine).with_for_update())
            for mid, name in conn.execute(stmt.values(state=action, acted_at=self.clock(),
                                                      how=how)
                                          .returning(mq.message_id, mq.quarantine)):
                acted.setdefault(int(mid), []).append(name)
            lost: dict[str, int] = {}
            for names in acted.values():
                for name in names:
                    lost[name] = lost.get(name, 0) - 1
            self._count(conn, lost)
        if not acted:
            return []
        # Uncorrelated (one set of the acted messages still held somewhere): a correlated
        # EXISTS made SQLite scan every held row of the state index once per message.
        held = select(mq.message_id).where(mq.message_id.in_(builtins.list(acted)),
                                           mq.state == HELD)
        with self.engine.begin() as conn:
            sizes = {int(i): int(n) for i, n in conn.execute(update(messages).where(
                messages.c.id.in_(builtins.list(acted)), messages.c.state == HELD,
                messages.c.id.not_in(held)).values(state=SETTLING, claimed_by=self.node,
                                            claimed_at=self.clock())
                .returning(messages.c.id, messages.c.size))}
            claimed = set(sizes)
            self._count(conn, {ALL_HELD: -len(claimed), HELD_BYTES: -sum(sizes.values())})
            self._unindex(conn, sorted(claimed))
            deleted = {int(i) for (i,) in conn.execute(select(mq.message_id).where(
                mq.message_id.in_(builtins.list(claimed)), mq.state == DELETED).distinct())
            } if claimed else set()
        return [Outcome(mid, tuple(sorted(names)),
                        (DELETED if mid in deleted else RELEASED) if mid in claimed else None)
                for mid, names in sorted(acted.items())]

    def settlement(self, mid: int) -> str | None:
        """RELEASED or DELETED once no quarantine holds *mid*; None while one does."""
        with self.engine.connect() as conn:
            states = [s for (s,) in conn.execute(select(message_quarantines.c.state).where(
                message_quarantines.c.message_id == mid))]
        if not states or HELD in states:
            return None
        return DELETED if DELETED in states else RELEASED

    def claim_settlement(self, mid: int) -> str | None:
        """Claim the settlement of *mid* for this process; its state if claimed, else None."""
        mq = message_quarantines.c
        still_held = exists().where(mq.message_id == mid, mq.state == HELD)
        with self.engine.begin() as conn:
            claimed = conn.execute(update(messages).where(
                messages.c.id == mid, messages.c.state == HELD, not_(still_held))
                .values(state=SETTLING, claimed_by=self.node, claimed_at=self.clock())
                .returning(messages.c.id, messages.c.size)).first()
            if claimed is not None:
                self._count(conn, {ALL_HELD: -1, HELD_BYTES: -int(claimed[1])})
                self._unindex(conn, [mid])
        return self.settlement(mid) if claimed is not None else None

    def unsettled(self) -> builtins.list[int]:
        """Messages to settle after a crash: unclaimed with no quarantine holding them,
        claimed by this process, or claimed by another long ago."""
        mq = message_quarantines.c
        # One set of every held message (uncorrelated): a correlated EXISTS made SQLite scan
        # every held row of the state index once per held message (a minute at 10,000).
        still_held = select(mq.message_id).where(mq.state == HELD)
        stale = self.clock() - STALE_CLAIM_S
        with self.engine.connect() as conn:
            return [i for (i,) in conn.execute(select(messages.c.id).where(or_(
                and_(messages.c.state == HELD, messages.c.id.not_in(still_held)),
                and_(messages.c.state == SETTLING,
                     or_(messages.c.claimed_by == self.node, messages.c.claimed_at < stale))))
                .order_by(messages.c.id))]

    def reclaim(self, mid: int) -> str | None:
        """Take over an unfinished settlement found by `unsettled()`; its state or None."""
        state = self.claim_settlement(mid)
        if state is not None:
            return state
        stale = self.clock() - STALE_CLAIM_S
        with self.engine.begin() as conn:
            took = conn.execute(update(messages).where(
                messages.c.id == mid, messages.c.state == SETTLING,
                or_(messages.c.claimed_by == self.node, messages.c.claimed_at < stale))
                .values(claimed_by=self.node, claimed_at=self.clock())
                .returning(messages.c.id)).first()
        return self.settlement(mid) if took is not None else None

    def finish(self, mid: int, state: str) -> None:
        """Record the settlement and drop the body (a release is already spooled)."""
        with self.engine.begin() as conn:
            path = conn.execute(select(messages.c.body_path).where(messages.c.id == mid)).scalar()
            conn.execute(messages.update().where(messages.c.id == mid).values(
                state=state, settled_at=self.clock()))
            if not path:  # the body is in the database
                conn.execute(delete(message_bodies).where(message_bodies.c.message_id == mid))
        if path:
            # No directory fsync: a body an unlink lost to a crash is swept at start-up.
            remove_durably(Path(path), sync_dir=False)

    def finish_many(self, settled: builtins.list[tuple[int, str]], *,
                    unlink: bool = True) -> builtins.list[Path]:
        """`finish` for many messages `(mid, state)`: one transaction, then the unlinks
        (with *unlink* False, left to the caller: the body files are returned, for
        `unlink_bodies` off the event loop)."""
        if not settled:
            return []
        mids = [mid for mid, _ in settled]
        with self.engine.begin() as conn:
            found = conn.execute(select(messages.c.id, messages.c.body_path).where(
                messages.c.id.in_(mids))).all()
            for state in {state for _, state in settled}:
                conn.execute(messages.update().where(messages.c.id.in_(
                    [mid for mid, s in settled if s == state])).values(
                    state=state, settled_at=self.clock()))
            inline = [mid for mid, path in found if not path]
            if inline:
                conn.execute(delete(message_bodies).where(
                    message_bodies.c.message_id.in_(inline)))
        files = [Path(path) for _, path in found if path]
        if unlink:
            unlink_bodies(files)
        return files

    def read_body(self, mid: int) -> bytes:
        """*mid*'s body: its row in `message_bodies` if it has one (a small body, or every
        body of a `database` store), its file `<mid>.eml` otherwise."""
        with self.engine.connect() as conn:
            body = conn.execute(select(message_bodies.c.body).where(
                message_bodies.c.message_id == mid)).scalar()
        if body is not None:
            return bytes(body)
        if self.bodies_in_db:
            raise FileNotFoundError(f"no body for MID {mid}")
        return (self.bodies / f"{mid}.eml").read_bytes()

    def delay(self, mid: int, seconds: float, quarantine: str | None = None
              ) -> builtins.list[str]:
        """Delay the scheduled exit of *mid* by *seconds*; the quarantines changed."""
        mq = message_quarantines.c
        stmt = update(message_quarantines).where(mq.message_id == mid, mq.state == HELD)
        if quarantine is not None:
            stmt = stmt.where(mq.quarantine == quarantine)
        with self.engine.begin() as conn:
            changed = sorted(q for (q,) in conn.execute(
                stmt.values(scheduled_exit=mq.scheduled_exit + seconds).returning(mq.quarantine)))
        if not changed:
            where = f' "{quarantine}"' if quarantine else " any quarantine"
            raise QuarantineError(f"MID {mid} is not held in{where}.")
        return changed

    def move(self, mid: int, source: str, target: str) -> None:
        """Move *mid* from *source* to *target*, keeping its scheduled exit and reason."""
        if target not in self.settings:
            raise QuarantineError(f'No quarantine "{target}".')
        if target in (BuiltinQuarantine.VIRUS, BuiltinQuarantine.OUTBREAK,
                      BuiltinQuarantine.UNCLASSIFIED):
            raise QuarantineError(f'Messages can be moved only to policy quarantines, '
                                  f'not "{target}".')
        mq = message_quarantines.c
        with self.engine.begin() as conn:
            if conn.execute(select(mq.message_id).where(
                    mq.message_id == mid, mq.quarantine == target)).first() is not None:
                raise QuarantineError(f'MID {mid} is already in quarantine "{target}".')
            moved = conn.execute(update(message_quarantines).where(
                mq.message_id == mid, mq.quarantine == source, mq.state == HELD)
                .values(quarantine=target).returning(mq.message_id)).first()
            if moved is not None:
                self._count(conn, {source: -1, target: 1})
        if moved is None:
            raise QuarantineError(f'MID {mid} is not held in "{source}".')

    # -- expiry and overflow -------------------------------------------------
    def due(self, now: float, limit: int = 1000) -> builtins.list[tuple[int, str, str]]:
        """Held (MID, quarantine, default action) whose scheduled exit has passed."""
        mq = message_quarantines.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(mq.message_id, mq.quarantine).where(
                mq.state == HELD, mq.scheduled_exit <= now)
                .order_by(mq.scheduled_exit).limit(limit)).all()
        return [(int(m), q, self.default_action(q)) for m, q in rows]

    def default_action(self, name: str) -> str:
        settings = self.settings.get(name)
        if settings is None:
            with self.engine.connect() as conn:
                action = conn.execute(select(quarantines.c.default_action).where(
                    quarantines.c.name == name)).scalar()
            return str(action or DELETE)
        return settings.default_action

    def overflow_candidates(self, limit: int = 10000) -> builtins.list[OverflowCandidate]:
        """Oldest held messages whose every holding quarantine frees space on overflow."""
        allowed = [n for n, s in self.settings.items() if s.overflow]
        mq = message_quarantines.c
        blocked = exists().where(mq.message_id == messages.c.id, mq.state == HELD,
                                 mq.quarantine.not_in(allowed))
        with self.engine.connect() as conn:
            rows = conn.execute(select(messages.c.id, messages.c.received_at, messages.c.size)
                                .where(messages.c.state == HELD, not_(blocked))
                                .order_by(messages.c.received_at, messages.c.id)
                                .limit(limit)).all()
        return [OverflowCandidate(int(i), float(r), int(s)) for i, r, s in rows]

    def held_in(self, mid: int) -> builtins.list[str]:
        """The quarantines that still hold *mid*."""
        mq = message_quarantines.c
        with self.engine.connect() as conn:
            return [q for (q,) in conn.execute(select(mq.quarantine).where(
                mq.message_id == mid, mq.state == HELD).order_by(mq.quarantine))]


def unlink_bodies(paths: builtins.list[Path]) -> None:
    """Unlink settled bodies (missing is fine). No directory fsync: a body an unlink lost
    to a crash has no held row any more, and the start-up sweep removes it."""
    for path in paths:
        remove_durably(path, sync_dir=False)
