"""pvoq: a centralized Policy, Virus and Outbreak (PVO) email quarantine.

Gateways scan mail and ship what they catch over CPQ (SMTP with mandatory
mutual TLS and metadata commands) to one manager that keeps the quarantines;
released mail travels back over CPQ to the gateway it came from.
"""

__version__ = "0.1.0"
