"""Counters (pvoq.counters): kept across restarts, written off the caller's thread."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from pvoq import counters as counters_module
from pvoq.counters import Counters


def _wait_for(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():   # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("not in time")


def test_inc_writes_in_a_thread_of_its_own_and_a_restart_reads_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "counters.json"
    writers: list[str] = []
    real = counters_module.atomic_write

    def recording(target: Path, data: bytes, **kwargs: object) -> None:
        writers.append(threading.current_thread().name)
        real(target, data)
    monkeypatch.setattr(counters_module, "atomic_write", recording)
    monkeypatch.setattr(counters_module, "SAVE_EVERY_S", 0.0)
    c = Counters(path)
    c.inc("messages_received", 3)
    _wait_for(lambda: path.exists()
              and json.loads(path.read_text())["lifetime"].get("messages_received") == 3)
    assert writers and set(writers) == {"counters"}   # never the caller's thread
    c.inc("messages_received")
    c.save()                                           # at stop: now, on the caller's thread
    assert writers[-1] == threading.current_thread().name
    assert Counters(path).row("messages_received") == (4, 0, 4)


def test_a_failed_background_write_is_tried_again(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "counters.json"
    failures = [OSError(28, "No space left on device")]
    real = counters_module.atomic_write

    def flaky(target: Path, data: bytes, **kwargs: object) -> None:
        if failures:
            raise failures.pop()
        real(target, data)
    monkeypatch.setattr(counters_module, "atomic_write", flaky)
    monkeypatch.setattr(counters_module, "SAVE_EVERY_S", 0.0)
    c = Counters(path)
    c.inc("x")                       # this write fails, in the background: no exception here
    _wait_for(lambda: not failures)
    c.inc("x")
    _wait_for(lambda: path.exists() and json.loads(path.read_text())["lifetime"]["x"] == 2)
