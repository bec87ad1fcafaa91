"""Scanning pipeline throughput: 10 KB messages through filters and a real clamd.

Runs the gateway's `Pipeline` (the code `Gateway.process` calls in its worker
thread) over N distinct 10 KB messages, one after the other as the gateway's
pipeline worker does, twice in the same invocation:

- without scanning: the same pipeline with no filters, anti-virus off and
  outbreak filters off (parsing, stage dispatch and per-stage timeouts only);
- with scanning: three message filters, a legacy content filter plus one in
  the filter language, clamd over its Unix socket (INSTREAM, a private clamd
  started here with the test EICAR signatures), and an outbreak rules file.

One message in ten carries EICAR in a base64 attachment, one in ten an
outbreak URL, so the verdicts are exercised, not only the clean path.
Bounded: N messages and a deadline per phase. Loopback only (a Unix socket).

Last line: `RESULT pipeline <msgs/s with scanning> msgs/s ratio=<with ÷ without>`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from pvoq.config.filterlang import parse_filters
from pvoq.config.model import AntivirusSettings, ContentFilter, OutbreakSettings, ScanSettings
from pvoq.scan.antivirus import EICAR
from pvoq.scan.message import Envelope
from pvoq.scan.pipeline import Pipeline, ScanResult
from pvoq.testing.clamd import ClamdProcess, ClamdUnavailable

MESSAGE_FILTERS = """
no_exe:   if attachment-filename == "\\.(exe|scr|pif)$" { quarantine("Policy"); }
too_big:  if body-size > 20M { bounce(); }
tag_ext:  if not sendergroup == "RELAYLIST" { insert-header("X-External", "yes"); }
"""
CONTENT_FILTERS = 'bulk: if header("Precedence") == "(?i)bulk" { quarantine("Policy"); }'
RULES = {"version": "bench", "rules": [
    {"id": "OF-1", "threat_level": 4, "urls": ["parcel-track.example/track"]},
    {"id": "OF-2", "threat_level": 4, "attachment_extensions": ["scr", "js"]},
]}
ENVELOPE = Envelope("alice@sender.example", ("bob@example.com",), "192.0.2.7", "UNKNOWNLIST")


def make_message(i: int, size: int) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = "alice@sender.example", "bob@example.com"
    msg["Subject"] = f"Benchmark message {i}"
    msg["Message-ID"] = f"<bench-{i}@sender.example>"
    text = f"Message {i}.\n"
    if i % 10 == 3:
        text += f"Track your parcel: http://parcel-track.example/track?id={i}\n"
    filler = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 200)
    msg.set_content(text + filler[:max(0, size - 1500 - len(text))])
    if i % 10 == 7:
        msg.add_attachment(EICAR, maintype="application", subtype="octet-stream",
                           filename="invoice.com")
    else:
        msg.add_attachment(f"report {i}\n".encode() * 40, maintype="application",
                           subtype="octet-stream", filename=f"report-{i}.txt")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def measure(pipeline: Pipeline, messages: list[bytes], deadline_s: float
            ) -> tuple[float, int, dict[str, int]]:
    """Messages per second, messages done, and the count of each outcome."""
    outcomes: dict[str, int] = {}
    start = time.perf_counter()
    done = 0
    for body in messages:
        result: ScanResult = pipeline.run(body, envelope=ENVELOPE)
        key = result.action + ":" + ",".join(v.quarantine for v in result.verdicts)
        outcomes[key] = outcomes.get(key, 0) + 1
        done += 1
        if time.perf_counter() - start > deadline_s:
            break
    return done / (time.perf_counter() - start), done, outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--messages", type=int, default=2000)
    parser.add_argument("--size", type=int, default=10 * 1024, help="bytes per message")
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds per phase")
    args = parser.parse_args()

    messages = [make_message(i, args.size) for i in range(args.messages)]
    mean = sum(map(len, messages)) / len(messages)
    with tempfile.TemporaryDirectory(prefix="pvoq-bench-pipeline-") as tmp:
        root = Path(tmp)
        rules = root / "rules.json"
        rules.write_text(json.dumps(RULES))
        clamd = ClamdProcess(root / "clamd")
        try:
            clamd.start()
        except ClamdUnavailable as exc:
            print(f"bench/pipeline.py needs clamd (Debian clamav-daemon): {exc}", file=sys.stderr)
            return 1
        try:
            plain = Pipeline(ScanSettings(antivirus_enabled=False, outbreak_enabled=False))
            scanning = Pipeline(ScanSettings(
                message_filters=tuple(parse_filters(MESSAGE_FILTERS)),
                content_filters=(ContentFilter("confidential_subject", "Subject",
                                               re.compile(r"(?i)\bconfidential\b")),),
                content_filter_rules=tuple(parse_filters(CONTENT_FILTERS)),
                antivirus=AntivirusSettings(clamd_socket=str(clamd.socket_path),
                                            timeout_seconds=10),
                outbreak=OutbreakSettings(rules_file=rules)))
            warm = messages[:50]
            measure(plain, warm, args.deadline)
            measure(scanning, warm, args.deadline)
            print(f"pipeline: {' -> '.join(r['stage'] for r in scanning.describe())}")
            print(f"messages: {len(messages)} distinct, mean {mean / 1024:.1f} KB "
                  f"(1 in 10 EICAR attachment, 1 in 10 outbreak URL)")
            print(f"engine:   {scanning.engine.describe()} (private clamd, test signatures)")
            base_rate, base_n, _ = measure(plain, messages, args.deadline)
            print(f"without scanning (no filters, a/v off, outbreak off): "
                  f"{base_rate:8.1f} msgs/s ({base_n} messages)")
            rate, n, outcomes = measure(scanning, messages, args.deadline)
            print(f"with scanning (5 filters + clamd + outbreak rules):   "
                  f"{rate:8.1f} msgs/s ({n} messages)")
            print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
            plain.close()
            scanning.close()
        finally:
            clamd.stop()
    print(f"RESULT pipeline {rate:.1f} msgs/s ratio={rate / base_rate:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
