"""mail_logs in AsyncOS form, and the persistent ID counters (ICID, MID, DCID)."""

from pvoq.maillog.ids import IdAllocator
from pvoq.maillog.writer import MailLog, format_line

__all__ = ["IdAllocator", "MailLog", "format_line"]
