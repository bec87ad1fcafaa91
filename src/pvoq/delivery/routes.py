"""Downstream delivery: SMTP routes from the configuration (`smtp_routes`)."""

from __future__ import annotations

from pvoq.config.model import DeliverySettings
from pvoq.delivery.queue import Destination, Target
from pvoq.maillog import IdAllocator, MailLog
from pvoq.smtp.client import SmtpConnection, TlsPolicy
from pvoq.spool.store import Entry


class SmtpRouteDestination(Destination):
    """A recipient domain delivered to the host its SMTP route names."""

    def __init__(self, name: str, *, settings: DeliverySettings, maillog: MailLog,
                 ids: IdAllocator, local_hostname: str, source_ip: str | None) -> None:
        self.name = name
        self.settings = settings
        self.maillog = maillog
        self.ids = ids
        self.local_hostname = local_hostname
        self.source_ip = source_ip

    def target(self, entry: Entry) -> Target | None:
        route = self.settings.route_for(self.name)
        return None if route is None else Target(route.host, route.port)

    def connection(self) -> SmtpConnection:
        return SmtpConnection(maillog=self.maillog, ids=self.ids,
                              local_hostname=self.local_hostname, label=self.name,
                              tls=TlsPolicy(), timeout_s=self.settings.timeout_seconds,
                              source_ip=self.source_ip)
