"""`<metrics>`: where an appliance serves its Prometheus metrics (`MetricsSettings`).

Off unless the section is written; a written `<metrics>` needs its `<port>`
and is on unless `<enabled>false</enabled>`::

    <metrics>
      <address>127.0.0.1</address>   <!-- default -->
      <port>9325</port>
    </metrics>
"""

from __future__ import annotations

from pvoq.config import convert
from pvoq.config.model import MetricsSettings
from pvoq.config.xmltree import Node


def parse_metrics(root: Node) -> MetricsSettings:
    """The `<metrics>` section of *root*, or the defaults (off) when there is none."""
    node = root.first("metrics")
    if node is None:
        return MetricsSettings()
    fields = convert.Fields(node, MetricsSettings)
    return MetricsSettings(enabled=fields("enabled", convert.boolean),
                           address=fields("address", convert.ip),
                           port=fields("port", convert.port))
