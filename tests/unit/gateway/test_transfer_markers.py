"""Received-transfer markers: kept while a retry can come, pruned after."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from pvoq.config.loader import load_config
from pvoq.config.template import ApplianceSpec
from pvoq.deploy import init_appliance
from pvoq.gateway import Gateway, handlers
from pvoq.gateway.handlers import TransferMarkers
from pvoq.gateway.role import MARKER_LIFETIME_S


class TestTransferMarkers:
    def test_old_markers_are_pruned_at_start_and_recent_ones_kept(self, tmp_path: Path) -> None:
        """A marker older than the retry window goes when the gateway starts; a fresh one stays."""
        path = init_appliance(tmp_path / "gw", ApplianceSpec(role="gateway", hostname="gw.test",
                                                            serial="SN"), ca_dir=tmp_path / "ca")
        config = load_config(path)
        first = Gateway(config)
        old, new = first.transfer_marker("r-SN-1"), first.transfer_marker("r-SN-2")
        old.write_text("1")
        new.write_text("2")
        stale = time.time() - MARKER_LIFETIME_S - 60
        os.utime(old, (stale, stale))
        first.maillog.close()
        second = Gateway(config)
        assert not old.exists() and new.exists()
        second.maillog.close()


class TestMarkersGroupCommit:
    """`TransferMarkers`: markers written together share a directory fsync; each writer
    returns only once a sync begun after its file was created has succeeded."""

    def test_concurrent_markers_share_directory_fsyncs(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        syncs: list[set[str]] = []

        def fsync_dir(path: Path) -> None:
            syncs.append({p.name for p in path.iterdir()})  # what this sync covers
            time.sleep(0.02)

        monkeypatch.setattr(handlers, "fsync_dir", fsync_dir)
        markers = TransferMarkers(tmp_path)
        names = [f"m{i}" for i in range(20)]

        async def main() -> None:
            await asyncio.gather(*(markers.write(tmp_path / n, b"7") for n in names))
        asyncio.run(main())
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
        assert (tmp_path / "m3").read_bytes() == b"7"
        assert 1 <= len(syncs) < len(names)
        assert set().union(*syncs) == set(names)

    def test_a_failed_sync_fails_only_the_markers_it_was_to_cover(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[int] = []
        first_started = threading.Event()
        release_first = threading.Event()

        def fsync_dir(path: Path) -> None:
            calls.append(len(calls))
            if len(calls) == 1:
                first_started.set()
                assert release_first.wait(10)
                raise OSError(5, "Input/output error")

        monkeypatch.setattr(handlers, "fsync_dir", fsync_dir)
        markers = TransferMarkers(tmp_path)

        async def main() -> tuple[BaseException | None, BaseException | None]:
            early = asyncio.ensure_future(markers.write(tmp_path / "early", b"1"))
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, first_started.wait, 10)
            late = asyncio.ensure_future(markers.write(tmp_path / "late", b"2"))
            for _ in range(500):  # the late marker's file is created during the first sync
                if (tmp_path / "late").exists():
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            release_first.set()
            results = await asyncio.gather(early, late, return_exceptions=True)
            return results[0], results[1]  # type: ignore[return-value]
        early, late = asyncio.run(main())
        assert isinstance(early, OSError)  # the sync meant to cover it failed
        assert late is None  # covered by the next sync, which succeeded
        assert len(calls) == 2
