"""A manager process whose quarantines live in PostgreSQL (bodies included): mail is
quarantined there, found, released and delivered through the gateway."""

from __future__ import annotations

from pvoq.testing.localdeploy import Deployment, wait_for
from pvoq.testing.pgserver import PostgresServer


class TestManagerOnPostgres:
    def test_quarantine_and_release_with_postgresql(self, deployment: Deployment,
                                                    postgres: PostgresServer) -> None:
        """With database_url and bodies=database, the round trip works and the row and the
        body are in PostgreSQL."""
        url = postgres.create_database("manager_e2e")
        config = deployment.manager_config
        config.write_text(config.read_text().replace("</config>", f"""
  <quarantine_store>
    <database_url>{url}</database_url>
    <bodies>database</bodies>
  </quarantine_store>
</config>"""))
        deployment.start()
        deployment.send(subject="confidential on postgres", body="kept in SQL")
        held = wait_for("quarantined", deployment.quarantined)[0]
        import psycopg

        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(dsn) as conn:
            body = conn.execute("SELECT body FROM message_bodies WHERE message_id = %s",
                                (held["id"],)).fetchone()
        assert body is not None and b"kept in SQL" in bytes(body[0])
        deployment.admin(deployment.manager_config, "quarantine.release", {"mid": held["id"]})
        _, raw = wait_for("delivered", deployment.delivered)[0]
        assert b"confidential on postgres" in raw
        with psycopg.connect(dsn) as conn:
            state = conn.execute("SELECT state FROM messages WHERE id = %s",
                                 (held["id"],)).fetchone()
            left = conn.execute("SELECT count(*) FROM message_bodies").fetchone()
        assert state == ("released",) and left == (0,)
