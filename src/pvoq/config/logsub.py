"""`<log_subscription>`: reading the manager's log subscription settings.

The section (all optional; the subscription is on by default, as on an SMA)::

    <log_subscription>
      <enabled>true</enabled>
      <interval_seconds>60</interval_seconds>     <!-- between pulls once caught up -->
      <chunk_bytes>1048576</chunk_bytes>          <!-- at most, per pull -->
      <chunk_lines>10000</chunk_lines>            <!-- at most, per pull -->
      <retention_days>30</retention_days>         <!-- tracking data kept; 0: forever -->
      <max_file_size>10M</max_file_size>          <!-- a kept copy rolls over past it -->
    </log_subscription>
"""

from __future__ import annotations

from pvoq.config import convert
from pvoq.config.logs import size
from pvoq.config.model import LogSubscriptionSettings
from pvoq.config.xmltree import Node


def log_subscription(root: Node) -> LogSubscriptionSettings:
    """The `<log_subscription>` section of *root*; its defaults when it is not written."""
    fields = convert.Fields(root.first("log_subscription"), LogSubscriptionSettings)
    return LogSubscriptionSettings(
        enabled=fields("enabled", convert.boolean),
        interval_seconds=fields("interval_seconds", convert.seconds),
        chunk_bytes=fields("chunk_bytes", convert.positive_int),
        chunk_lines=fields("chunk_lines", convert.positive_int),
        retention_days=fields("retention_days", convert.non_negative),
        max_file_size=fields("max_file_size", size),
    )
