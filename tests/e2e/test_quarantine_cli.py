"""The quarantine operator commands against a running deployment: search, saved searches,
bulk actions with --dry-run, delay, send copy, and the audit trail with tampering detected."""

from __future__ import annotations

import json
import os
import pwd
import sqlite3
import stat
import subprocess
import sys
from typing import Any

from pvoq.config.loader import load_config
from pvoq.quarantine.audit import record_hash
from pvoq.quarantine.schema import GENESIS
from pvoq.testing.localdeploy import Deployment, wait_for


def pvoq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def search(cfg: str, *args: str) -> dict[str, Any]:
    result = pvoq("cli", "-c", cfg, "quarantine", "search", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


class TestQuarantineCli:
    def test_search_bulk_copy_and_audit(self, running: Deployment) -> None:
        """Search finds by subject; a dry run changes nothing; bulk delete, delay and copy act;
        every step is in the audit trail and an edited record makes verify fail."""
        for subject in ("confidential offer A", "confidential memo", "confidential offer B"):
            running.send(subject=subject, body="x")
        wait_for("three quarantined", lambda: len(running.quarantined()) == 3)
        cfg = str(running.manager_config)

        found = search(cfg, "--subject", "contains:offer", "--page-size", "20")
        assert found["total"] == 2
        assert {m["subject"] for m in found["messages"]} == {"confidential offer A",
                                                             "confidential offer B"}
        assert search(cfg, "--subject", "does-not-contain:offer")["total"] == 1
        assert search(cfg, "--reason", "contains:confidential", "-q", "Policy")["total"] == 3

        saved = pvoq("cli", "-c", cfg, "quarantine", "search", "--save", "offers",
                     "--subject", "contains:offer")
        assert saved.returncode == 0 and "Saved search 'offers'" in saved.stdout
        assert search(cfg, "--saved", "offers")["total"] == 2

        dry = pvoq("cli", "-c", cfg, "quarantine", "bulk", "delete", "--saved", "offers",
                   "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "would act on 2 messages" in dry.stdout
        assert search(cfg)["total"] == 3

        done = pvoq("cli", "-c", cfg, "quarantine", "bulk", "delete", "--subject",
                    "starts-with:confidential offer")
        assert done.returncode == 0 and "did act on 2 messages (2 done)" in done.stdout
        memo = search(cfg)["messages"]
        assert [m["subject"] for m in memo] == ["confidential memo"]
        mid = str(memo[0]["id"])

        delayed = pvoq("cli", "-c", cfg, "quarantine", "delay", mid, "--by", "48h")
        assert delayed.returncode == 0 and "delayed by 48h" in delayed.stdout

        copied = pvoq("cli", "-c", cfg, "quarantine", "copy", mid, "--to",
                      "legal@example.com")
        assert copied.returncode == 0, copied.stderr
        envelope, _ = wait_for("the copy delivered", running.delivered)[0]
        assert envelope["rcpt_tos"] == ["legal@example.com"]
        assert search(cfg)["total"] == 1

        tail = pvoq("cli", "-c", cfg, "audit", "tail", "--json", "-n", "50")
        actions = [r["action"] for r in json.loads(tail.stdout)]
        assert {"search", "save-search", "bulk-dry-run", "bulk", "delete", "delay",
                "copy"} <= set(actions)
        verified = pvoq("cli", "-c", cfg, "audit", "verify")
        assert verified.returncode == 0 and "Audit trail intact" in verified.stdout

        db = load_config(cfg).data_dir / "quarantine.db"
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
        broken = pvoq("cli", "-c", cfg, "audit", "verify")
        assert broken.returncode == 1
        assert "BROKEN at record 2" in broken.stderr

    def test_one_user_one_actor_and_a_keyed_trail(self, running: Deployment) -> None:
        """A search and a release by the same CLI user record the same actor, the user of
        the process on the admin socket, whatever LOGNAME says; the trail is keyed with
        audit.key (0600), so an edit with the plain SHA-256 chain recomputed is found."""
        running.send(subject="confidential numbers", body="x")
        wait_for("one quarantined", lambda: len(running.quarantined()) == 1)
        cfg = str(running.manager_config)
        env = {**os.environ, "LOGNAME": "mallory", "USER": "mallory"}
        found = pvoq("cli", "-c", cfg, "quarantine", "search", "--json", env=env)
        assert found.returncode == 0, found.stderr
        mid = str(json.loads(found.stdout)["messages"][0]["id"])
        released = pvoq("cli", "-c", cfg, "quarantine", "release", mid, env=env)
        assert released.returncode == 0, released.stderr
        # The gateway's release receipt is the trail's last record, once it has come back.
        wait_for("the release receipt", lambda: any(r["action"] == "receipt" for r in json.loads(
            pvoq("cli", "-c", cfg, "audit", "tail", "--json", "-n", "50").stdout)))

        tail = pvoq("cli", "-c", cfg, "audit", "tail", "--json", "-n", "50")
        records = {r["action"]: r for r in json.loads(tail.stdout)}
        me = pwd.getpwuid(os.getuid()).pw_name
        assert records["search"]["actor"] == records["release"]["actor"] == me
        assert records["release"]["origin"].startswith(f"admin-socket (uid {os.getuid()}, pid ")
        plain = pvoq("cli", "-c", cfg, "audit", "tail", "-n", "2")
        assert f" {me}@admin-socket (uid {os.getuid()}, pid " in plain.stdout

        data_dir = load_config(cfg).data_dir
        assert stat.S_IMODE((data_dir / "audit.key").stat().st_mode) == 0o600
        assert pvoq("cli", "-c", cfg, "audit", "verify").returncode == 0
        with sqlite3.connect(data_dir / "quarantine.db") as conn:
            conn.execute("UPDATE audit SET actor = 'mallory' WHERE seq = 1")
            prev = GENESIS
            rows = conn.execute("SELECT seq, at, actor, origin, action, detail FROM audit "
                                "ORDER BY seq").fetchall()
            for seq, at, actor, origin, action, detail in rows:
                digest = record_hash(seq, at, actor, origin, action, detail, prev)
                conn.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?",
                             (prev, digest, seq))
                prev = digest
            conn.execute("UPDATE audit_head SET hash = ?", (prev,))
        broken = pvoq("cli", "-c", cfg, "audit", "verify")
        assert broken.returncode == 1
        assert "BROKEN at record 1: record 1 was altered" in broken.stderr

    def test_a_manager_with_another_audit_key_does_not_start(self, deployment: Deployment
                                                               ) -> None:
        """The audit key the trail was written with is checked at start: with another one
        the manager exits 1 and says which file is wrong and what to do."""
        key = load_config(deployment.manager_config).data_dir / "audit.key"
        deployment.start_manager()
        deployment.admin(deployment.manager_config, "quarantine.list")  # one record
        assert deployment.stop("manager") == 0
        first = key.read_bytes()
        key.write_bytes(bytes(b ^ 0xFF for b in first))
        refused = pvoq("manager", "run", "-c", str(deployment.manager_config))
        assert refused.returncode == 1
        assert f"pvoq: manager cannot start: wrong key: {key} is not the key this audit " \
            "trail was written with" in refused.stderr
        assert "Traceback" not in refused.stderr
        key.write_bytes(first)
        deployment.start_manager()
        verified = pvoq("cli", "-c", str(deployment.manager_config), "audit", "verify")
        assert verified.stdout.strip() == "Audit trail intact: 1 records."

    def test_bad_filter_is_a_usage_error(self, running: Deployment) -> None:
        """An unknown search operator is refused before anything is sent."""
        result = pvoq("cli", "-c", str(running.manager_config), "quarantine", "search",
                      "--sender", "near:alice")
        assert result.returncode == 2
        assert "OPERATOR:VALUE" in result.stderr
