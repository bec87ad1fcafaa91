"""The manager's web interfaces: the REST API (and, later, the web UI)."""
