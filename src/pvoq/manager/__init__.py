"""The manager role: keep the quarantines, release back through the gateways.

`role.Manager` wires the parts; `handler.QuarantineHandler` is its
`cpq_listener` (quarantine transfers and outbreak rescan notices from the
gateways); `releases.Releases` settles what no quarantine holds any more
(queue the release to the originating gateway, or drop it).
"""

from __future__ import annotations

from pvoq.manager.role import Manager, quarantine_settings

__all__ = ["Manager", "quarantine_settings"]
