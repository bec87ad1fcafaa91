"""The durable message spool: what a `250` after DATA promises."""

from pvoq.spool.store import Entry, Recipient, Spool

__all__ = ["Entry", "Recipient", "Spool"]
