"""Every writer of pvoq's files, failing mid-write: no temporary file is left behind.

A full disk (ENOSPC from `fsync`, the last step before the rename) is injected
into each writer in turn; the writer must raise and leave no `*.tmp` file.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import asyncssh
import pytest

from pvoq.config.template import ApplianceSpec
from pvoq.counters import Counters
from pvoq.cpq.ca import create_ca
from pvoq.deploy import init_appliance
from pvoq.fsutil import TMP_SUFFIX
from pvoq.maillog import IdAllocator
from pvoq.remote.keys import AuthorizedKeys, EnrolTokens, load_or_create_key
from pvoq.scan.rescan import OutbreakCopies, OutbreakCopy
from pvoq.spool.store import Entry, Recipient, Spool

Writer = Callable[[Path], Callable[[], object]]


def _ids(root: Path) -> Callable[[], object]:
    ids = IdAllocator(root / "ids.json")
    return lambda: ids.next("mid")


def _counters(root: Path) -> Callable[[], object]:
    counters = Counters(root / "counters.json")
    return counters.save


def _spool_bad(root: Path) -> Callable[[], object]:
    spool = Spool(root / "spool")
    spool.put(Entry(mid=7, sender="a@example.com", recipients=[Recipient(1, "b@example.com")],
                    received=1.0, size=4), b"body")
    return lambda: spool.move_to_bad(7)


def _outbreak_copy(root: Path) -> Callable[[], object]:
    copies = OutbreakCopies(root / "outbreak_copies")
    copy = OutbreakCopy(mid=3, transfer_id="t", sender="a@example.com",
                        recipients=["b@example.com"], rule="r", threat_level=3,
                        quarantined_at=1.0, retention_s=60.0)
    return lambda: copies.keep(copy, b"body")


def _ssh_key(root: Path) -> Callable[[], object]:
    return lambda: load_or_create_key(root / "id_ed25519")


def _authorized_keys(root: Path) -> Callable[[], object]:
    keys = AuthorizedKeys(root / "authorized_keys")
    key = asyncssh.generate_private_key("ssh-ed25519")
    return lambda: keys.add(key, "manager")


def _tokens(root: Path) -> Callable[[], object]:
    return EnrolTokens(root / "enrol_tokens.json").issue


def _ca(root: Path) -> Callable[[], object]:
    return lambda: create_ca(root / "ca")


def _init(root: Path) -> Callable[[], object]:
    create_ca(root / "ca")
    spec = ApplianceSpec(role="manager", hostname="m.pvoq.test", serial="S", ip="127.0.0.1",
                         cpq_port=7025)
    return lambda: init_appliance(root / "manager", spec, ca_dir=root / "ca")


WRITERS: dict[str, Writer] = {
    "ids": _ids, "counters": _counters, "spool bad": _spool_bad,
    "outbreak copies": _outbreak_copy, "ssh key": _ssh_key,
    "authorized_keys": _authorized_keys, "enrol tokens": _tokens, "ca": _ca,
    "pvoq init": _init,
}


def _temporary_files(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob(f"*{TMP_SUFFIX}")]


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_full_disk_leaves_no_temporary_file(name: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write = WRITERS[name](tmp_path)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as raised:
        write()
    monkeypatch.undo()
    assert raised.value.errno == errno.ENOSPC
    assert _temporary_files(tmp_path) == []
