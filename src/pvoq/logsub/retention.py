"""How long the log subscription keeps what it pulled: the kept copies' rollover and removal.

A gateway's kept copy, `<data_dir>/gateway_logs/<gateway>/mail_logs`, rolls
over as a log does (`maillog.rollover`): once it holds `max_file_size`
bytes, the next pull first renames it to `mail_logs.@<YYYYMMDDTHHMMSS>.s`
and starts a new one. The rename comes first (its directory fsync'd), then
the index records that the new copy is empty (`TrackingIndex.restart_copy`).
A crash between the two leaves no `mail_logs` while the index still covers
some bytes of it; `recover_rolled` finds the rolled file of exactly that
size and finishes the rollover at the next start, so no line is lost or kept
twice.

Retention (`retention_days`, 30; 0 keeps everything): once an hour, the
index forgets each message whose lines are all older (`TrackingIndex.prune`),
and a rolled copy whose last line is older (its modification time) is
deleted. The current copy is never deleted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pvoq.fsutil import fsync_dir
from pvoq.maillog.rollover import rolled_files, rolled_name

PRUNE_EVERY_S = 3600.0


def roll_copy(path: Path, now: float) -> Path:
    """Rename the kept copy *path* to its rolled name (durable); return the new name."""
    taken = {p.name for p in rolled_files(path.parent, path.name)}
    target = path.parent / rolled_name(path.name, now, taken)
    os.rename(path, target)
    fsync_dir(path.parent)
    return target


def recover_rolled(path: Path, stored: int) -> Path | None:
    """After a crash between a copy's rename and the index's record of it: the rolled file
    that holds exactly the *stored* bytes the index covers, when *path* itself is gone."""
    if stored <= 0 or path.exists():
        return None
    rolled = rolled_files(path.parent, path.name)
    if rolled and rolled[-1].stat().st_size == stored:
        return rolled[-1]
    return None


def delete_old_copies(path: Path, before: float) -> list[Path]:
    """Delete the rolled files of the kept copy *path* last written before *before*."""
    deleted = []
    for rolled in rolled_files(path.parent, path.name):
        try:
            if rolled.stat().st_mtime < before:
                rolled.unlink()
                deleted.append(rolled)
        except FileNotFoundError:
            continue
    return deleted


def cutoff(retention_days: float, now: float | None = None) -> float | None:
    """The time before which tracking data goes; None when it is kept forever."""
    if retention_days <= 0:
        return None
    return (time.time() if now is None else now) - retention_days * 86400.0
