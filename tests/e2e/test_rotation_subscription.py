"""mail_logs rollovers while mail flows, seen through the manager's log subscription.

A real gateway with its SSH command service and small mail_logs files, a real
manager pulling them every 0.3 s. While messages flow through the gateway its
mail_logs rolls over by size, by `rollovernow`, and by logrotate's way (an
outside rename to `mail_logs.1`, then SIGHUP), and the manager is stopped
(SIGTERM) and started again. Afterwards every line of every gateway file (the
rolled `.s` files, `mail_logs.1`, the current one) is in the manager's copy
exactly once, in order, and each message's lines are there once.
"""

from __future__ import annotations

import collections
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from logsubsetup import SMALL_LOGS, cli, subscribed_deployment

from pvoq.logsub.reader import log_files
from pvoq.testing.localdeploy import GATEWAY, Deployment, wait_for

MESSAGES = 48


@pytest.fixture
def subscribed(tmp_path: Path) -> Iterator[Deployment]:
    """A gateway whose mail_logs rolls at 8K; a manager that pulls it every 0.3 s."""
    with subscribed_deployment(tmp_path, interval_s=0.3, chunk_lines=40,
                               gateway_logs=SMALL_LOGS) as dep:
        yield dep


def _gateway_files(dep: Deployment) -> list[Path]:
    """The gateway's mail_logs files in the order the subscription reads them."""
    return [path for path, _ in log_files(dep.root / "gateway" / "data" / "logs")]


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines()


def _copy(dep: Deployment) -> list[str]:
    path = dep.root / "manager" / "data" / "gateway_logs" / GATEWAY / "mail_logs"
    return _read_lines(path) if path.exists() else []


def _pull_until(dep: Deployment, marker: str, lines: int) -> list[str]:
    """Pull now, again and again (bounded), until the manager's copy has *lines* lines at
    least, *marker* in one of them, and a pull brought no more mail lines (each pull
    logs its own SSH command line): a pull takes the lines a chunk at a time, so a copy
    that has the marker may still lack lines written before it was pulled (under load,
    deliveries are logged after the last receipt)."""
    last: list[int] = []

    def pulled() -> list[str] | None:
        dep.admin(dep.manager_config, "logsub.pull")
        copy = _copy(dep)
        mail = sum("MID " in x for x in copy)
        settled = bool(last) and last[-1] == mail
        last.append(mail)
        return copy if settled and len(copy) >= lines and any(marker in x for x in copy) \
            else None
    found: list[str] = wait_for(f"{marker!r} in the manager's copy", pulled, timeout_s=120,
                                interval_s=0.3)
    return found


def test_every_rolled_line_reaches_the_manager_exactly_once(subscribed: Deployment) -> None:
    dep = subscribed
    logs = dep.root / "gateway" / "data" / "logs"
    sent: list[str] = []
    errors: list[BaseException] = []

    def send_all() -> None:
        try:
            for n in range(MESSAGES):
                dep.send(subject=f"flowing {n}", body=f"message {n}\n" + "text line\n" * 20)
                sent.append(f"flowing {n}")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def reached(count: int) -> None:
        wait_for(f"{count} messages sent", lambda: len(sent) >= count or errors,
                 timeout_s=240)
        assert errors == []

    sender = threading.Thread(target=send_all)
    sender.start()
    try:
        # 1. on demand, while mail flows (and by size all along)
        reached(MESSAGES // 4)
        done = cli(dep.gateway_config, "rollovernow")
        assert done.returncode == 0, done.stderr

        # 2. logrotate's way: an outside rename to a name the subscription does not make,
        #    then SIGHUP; the lines written into mail_logs.1 up to the SIGHUP must arrive
        reached(MESSAGES // 2)
        moved = logs / "mail_logs.1"
        os.rename(logs / "mail_logs", moved)
        os.kill(dep.procs["gateway"].pid, signal.SIGHUP)
        wait_for("a new mail_logs after SIGHUP", (logs / "mail_logs").exists)

        # 3. the manager stopped in the middle of it all, then started again
        reached(3 * MESSAGES // 4)
        assert dep.stop("manager") == 0
        dep.start_manager()
    finally:
        sender.join(300)
    assert errors == []
    assert len(sent) == MESSAGES
    # Every one of them by its subject (the sink may hold other mail too, such as the
    # manager's own, so that a count could be reached before the last one arrives).
    wanted = {f"Subject: flowing {n}".encode() for n in range(MESSAGES)}
    wait_for("every message at the sink", lambda: wanted <= {
        line for _, raw in dep.delivered() for line in raw.splitlines()}, timeout_s=240)
    dep.admin(dep.gateway_config, "status")  # a turn of the loop: what was logged is written

    # The files no one writes any more (every one but the current) are what must arrive
    # whole; the current one may go on growing (each pull logs its SSH command) and roll.
    done = _gateway_files(dep)[:-1]
    done_lines = [x for path in done for x in _read_lines(path)]
    last = f'Subject "flowing {MESSAGES - 1}"'
    copy = _pull_until(dep, last, len(done_lines))

    files = _gateway_files(dep)
    names = [p.name for p in files]
    assert names[:len(done)] == [p.name for p in done]  # the order the subscription read
    assert "mail_logs.1" in names and names[-1] == "mail_logs"
    rolled = [n for n in names if n.endswith(".s")]
    assert len(rolled) > 2, names   # rollovernow, and the rest by size
    everything = [x for path in files for x in _read_lines(path)]
    assert copy == everything[:len(copy)]   # in order, none twice, none missing
    assert copy[:len(done_lines)] == done_lines   # every finished file whole, in order
    # what is not in the copy yet was written after the last pull: no mail in it
    assert not [x for x in everything[len(copy):] if "MID " in x]
    # compared as multisets too: every line the gateway wrote up to the last pull, once
    assert collections.Counter(copy) == collections.Counter(everything[:len(copy)])
    # logrotate's file: the lines up to the rename and those written after it until SIGHUP
    in_moved = _read_lines(moved)
    assert in_moved[-1].endswith("Logfile rolled over")
    assert collections.Counter(in_moved) <= collections.Counter(copy)

    # per message: one Start MID, one Subject line per message sent, none twice
    starts = [x for x in copy if " Info: Start MID " in x]
    assert len(starts) == MESSAGES
    subjects = collections.Counter(x.split('Subject "', 1)[1].rstrip('"')
                                   for x in copy if ' Subject "flowing ' in x)
    assert subjects == dict.fromkeys(sent, 1)
    per_mid = collections.Counter(x for x in copy if " MID " in x)
    assert [x for x, n in per_mid.items() if n > 1] == []
    assert sum(x.endswith("Begin Logfile") for x in done_lines) == len(done)
