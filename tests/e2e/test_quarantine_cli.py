"""The quarantine operator commands against a running deployment: search, saved searches,
bulk actions with --dry-run, delay, send copy, and the audit trail with tampering detected."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from typing import Any

from pvoq.config.loader import load_config
from pvoq.testing.localdeploy import Deployment, wait_for


def pvoq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pvoq", *args], capture_output=True,
                          text=True, timeout=60)


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

    def test_bad_filter_is_a_usage_error(self, running: Deployment) -> None:
        """An unknown search operator is refused before anything is sent."""
        result = pvoq("cli", "-c", str(running.manager_config), "quarantine", "search",
                      "--sender", "near:alice")
        assert result.returncode == 2
        assert "OPERATOR:VALUE" in result.stderr
