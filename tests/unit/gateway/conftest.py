"""A gateway built from a `pvoq init` configuration, without its listeners started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pvoq.config.loader import load_config
from pvoq.config.template import ApplianceSpec
from pvoq.deploy import init_appliance
from pvoq.gateway import Gateway


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    path = init_appliance(tmp_path / "gw", ApplianceSpec(role="gateway", hostname="gw.test",
                                                        serial="SN"), ca_dir=tmp_path / "ca")
    gw = Gateway(load_config(path))
    yield gw
    if gw.local.built:
        gw.local.store.close()
    gw.spool.close()
    gw.maillog.close()
