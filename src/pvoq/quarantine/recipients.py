"""Per-recipient actions: a held message split in two by recipients.

AsyncOS lets an operator release or delete a message for some of its
recipients. Here those recipients move to a new message (a new MID, the same
body, quarantines, reasons, exits and states), on which the action then
applies like any other; the original keeps the other recipients. One
transaction: the split is all or nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import delete, literal, select, update

from pvoq.fsutil import atomic_write
from pvoq.quarantine.schema import (
    ALL_HELD,
    HELD_BYTES,
    attachments,
    fts,
    message_bodies,
    message_quarantines,
    message_recipients,
    messages,
)
from pvoq.quarantine.store import HELD, QuarantineError, QuarantineStore
from pvoq.quarantine.words import reindex_words


def split(store: QuarantineStore, mid: int, addresses: Iterable[str], new_mid: int) -> int:
    """Move *addresses* (recipients of held *mid*) to a new message *new_mid*.

    The new message has the same body, quarantines, reasons, exits and
    states, so a per-recipient action is an action on it; *mid* keeps the
    other recipients. When *addresses* are all the recipients, nothing is
    split and *mid* is returned.
    """
    wanted = {a.lower() for a in addresses}
    with store.engine.begin() as conn:
        row = conn.execute(select(messages).where(messages.c.id == mid)
                           .with_for_update()).mappings().first()
        if row is None or row["state"] != HELD:
            raise QuarantineError(f"No message with MID {mid} in the quarantines.")
        recipients = json.loads(row["recipients"])
        moving = [r for r in recipients if r["address"].lower() in wanted]
        staying = [r for r in recipients if r["address"].lower() not in wanted]
        if not moving:
            raise QuarantineError(f"MID {mid} has no recipient {', '.join(sorted(wanted))}.")
        if not staying:
            return mid
        meta = json.loads(row["meta"])
        child = dict(row)
        child.update(id=new_mid, transfer_id=f"{row['transfer_id']}/{new_mid}",
                     recipients=json.dumps(moving),
                     meta=json.dumps({**meta, "recipients": moving}))
        if not row["body_path"]:  # the body is in the database
            conn.execute(message_bodies.insert().from_select(
                ["message_id", "body"],
                select(literal(new_mid), message_bodies.c.body)
                .where(message_bodies.c.message_id == mid)))
        else:
            path = store.bodies / f"{new_mid}.eml"
            atomic_write(path, store.read_body(mid))
            child["body_path"] = str(path)
        conn.execute(messages.insert().values(**child))
        conn.execute(update(messages).where(messages.c.id == mid).values(
            recipients=json.dumps(staying), meta=json.dumps({**meta, "recipients": staying})))
        rows = [dict(r) for r in conn.execute(select(message_quarantines).where(
            message_quarantines.c.message_id == mid)).mappings()]
        conn.execute(message_quarantines.insert(), [{**r, "message_id": new_mid}
                                                    for r in rows])
        rc = message_recipients.c
        conn.execute(update(message_recipients).where(
            rc.message_id == mid, rc.rid.in_([r["rid"] for r in moving]))
            .values(message_id=new_mid))
        files = [dict(f) for f in conn.execute(select(attachments).where(
            attachments.c.message_id == mid)).mappings()]
        if files:
            conn.execute(attachments.insert(), [{**f, "message_id": new_mid} for f in files])
        held = [r["quarantine"] for r in rows if r["state"] == HELD]
        store._count(conn, {**dict.fromkeys(held, 1), ALL_HELD: 1, HELD_BYTES: row["size"]})
        if store.dialect != "sqlite":  # the words of both, from their rows as they are now
            reindex_words(conn, [mid, new_mid])
            return new_mid
        t = fts["recipients"]
        conn.execute(delete(t).where(t.c.rowid == mid))
        store._index(conn, mid, recipients=" ".join(r["address"] for r in staying))
        store._index(conn, new_mid, subject=row["subject"], sender=row["sender"],
                    recipients=" ".join(r["address"] for r in moving),
                    reasons=" ".join(r["reason"] for r in rows),
                    attachments=" ".join(f["name"] for f in files))
    return new_mid
