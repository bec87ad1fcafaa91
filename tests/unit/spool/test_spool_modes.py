"""The spool's directories and files: 0750 and 0640 whatever the umask."""

from __future__ import annotations

from pathlib import Path

from pvoq.spool.store import Entry, Recipient, Spool
from pvoq.testing.files import loose_paths


def test_spool_and_bad_under_umask_000(tmp_path: Path, umask_000: None) -> None:
    spool = Spool(tmp_path / "data" / "spool")
    try:
        spool.put(Entry(mid=1, sender="a@example.com",
                        recipients=[Recipient(1, "b@example.com")], received=1.0, size=4),
                  b"body")
        spool.move_to_bad(1)
    finally:
        spool.close()
    assert (tmp_path / "data" / "spool" / "bad" / "1.eml").exists()
    assert loose_paths(tmp_path / "data") == []
