"""CPQ: the quarantine protocol between gateways and the manager.

SMTP with mandatory mutual TLS (both sides present a certificate of the
deployment's CPQ certificate authority) and an `XCPQ` command that carries
each message's metadata. The written spec is docs/cpq.md.
"""
