"""Alembic migrations of the quarantine database (see `pvoq.quarantine.migrate`)."""
