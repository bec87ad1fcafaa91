"""Received-transfer markers: kept while a retry can come, pruned after."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pvoq.config.loader import load_config
from pvoq.config.template import ApplianceSpec
from pvoq.deploy import init_appliance
from pvoq.gateway import Gateway
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
