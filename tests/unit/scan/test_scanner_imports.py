"""The scanner process stays small: what it imports to build its pipelines and scan.

Each gateway keeps one scanner process per spare CPU for its whole life, so
every library it loads costs resident memory all the time (issue 17's idle
target). These tests run the scanner side in a fresh interpreter, as the
gateway starts it, with settings that use every stage (message filters that
read each view and rewrite, content filters, the anti-virus check, outbreak
rules), scan a clean, a viral and an outbreak message, and then list what the
interpreter has loaded.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

from scanhelpers import message, with_attachment

from pvoq.config.filterlang import parse_filters
from pvoq.config.model import ContentFilter, OutbreakSettings, ScanSettings
from pvoq.scan.antivirus import EICAR
from pvoq.scan.message import Envelope

# Never in a scanner process: SMTP, CPQ and TLS, the stores, SSH, the console, metrics.
FORBIDDEN = ("aiosmtpd", "sqlalchemy", "alembic", "asyncssh", "cryptography", "fastapi",
             "starlette", "uvicorn", "jinja2", "pydantic", "prometheus_client", "argon2",
             "defusedxml", "asyncio", "ssl", "pvoq.smtp", "pvoq.cpq", "pvoq.spool",
             "pvoq.quarantine", "pvoq.web", "pvoq.metrics", "pvoq.maillog.writer",
             # OpenSSL's libcrypto: only for an outbreak rule with attachment hashes
             "_hashlib")

SCRIPT = """
import pickle, sys
from pvoq.scan.scanner import Scanner
settings, jobs = pickle.load(open(sys.argv[1], "rb"))
results = Scanner(settings).scan_many(jobs, 1)
print(" ".join(type(r).__name__ + ":" + str(getattr(r, "action", r)) for r in results))
print(" ".join(sorted(sys.modules)))
"""


def _settings(tmp_path: Path) -> ScanSettings:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"version": "1", "rules": [
        {"id": "OF-URL", "threat_level": 4, "urls": ["parcel.example/track"]}]}))
    filters = parse_filters(
        'every_view: if subject == "^never$" or header("X-Never") == "x" '
        'or body-contains("never-in-here") or attachment-filename == "^never$" '
        'or attachment-type == "^never/never$" or attachment-size > 100M '
        'or attachment-contains("never-in-here") { quarantine("Policy"); }\n'
        'rewrite: if true { insert-header("X-Scanned", "yes"); }')
    return ScanSettings(
        message_filters=tuple(filters),
        content_filters=(ContentFilter("confidential", "Subject",
                                       re.compile("(?i)confidential")),),
        outbreak=OutbreakSettings(rules_file=rules))


def _run_scanner(tmp_path: Path) -> tuple[str, set[str]]:
    envelope = Envelope("alice@example.org", ("bob@example.com",), "192.0.2.7", "UNKNOWNLIST")
    bodies = [message(), message("confidential numbers"),
              with_attachment(EICAR, filename="a.com"),
              message("Your parcel", "Track it: http://parcel.example/track?id=1")]
    jobs = [(body, envelope, None, None, None, ()) for body in bodies]
    data = tmp_path / "scanner-input.pickle"
    data.write_bytes(pickle.dumps((_settings(tmp_path), jobs)))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(data)], capture_output=True,
                          text=True, timeout=120, check=True)
    verdicts, modules = done.stdout.splitlines()
    return verdicts, set(modules.split())


def test_the_scanner_process_loads_no_smtp_cpq_store_or_web_library(tmp_path: Path) -> None:
    verdicts, modules = _run_scanner(tmp_path)
    # The scans ran (each stage had its say), so their lazily loaded modules are in too.
    assert verdicts.split() == ["ScanResult:pass", "ScanResult:quarantine",
                                "ScanResult:quarantine", "ScanResult:quarantine"]
    loaded = sorted(m for m in modules for f in FORBIDDEN if m == f or m.startswith(f + "."))
    assert loaded == []


def test_the_gateway_starts_its_scanners_from_the_scanner_module() -> None:
    """The process the gateway starts is that module (not `scan.workers`, which brings the
    event loop)."""
    from pvoq.scan import workers

    assert workers.SCANNER_MODULE == "pvoq.scan.scanner"
