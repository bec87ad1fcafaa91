"""Nothing lost, nothing quarantined twice: a gateway SIGKILLed at random moments.

2,000 messages flow into a gateway (half of them caught by a content filter)
while the test kills the gateway with SIGKILL at random moments and restarts
it, and stops and starts the manager ("flapping"). A message counts as
accepted when the sender got its 250. At the end every accepted message must
be quarantined on the manager exactly once, or delivered downstream.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import smtplib
import threading
import time
from collections import Counter
from email import message_from_bytes

import pytest

from pvoq.testing.localdeploy import Deployment, DeploymentError, wait_for

MESSAGES = 2000
SEED = 20261129
DEADLINE_S = 420.0


class Sender(threading.Thread):
    """Sends every message until the gateway says 250, over reused connections."""

    def __init__(self, dep: Deployment) -> None:
        super().__init__(daemon=True)
        self.dep = dep
        self.accepted: list[str] = []
        self.ambiguous: set[str] = set()  # the link broke after the end of DATA was sent
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + DEADLINE_S
        i = 0
        smtp: smtplib.SMTP | None = None
        try:
            while i < MESSAGES and time.monotonic() < deadline:
                tag = f"crash-{i:05d}"
                subject = f"confidential {tag}" if i % 2 else f"hello {tag}"
                wire = (f"From: alice@sender.example\r\nTo: bob@example.com\r\n"
                        f"Subject: {subject}\r\nMessage-ID: <{tag}@test>\r\n\r\n"
                        f"body of {tag}\r\n").encode()
                in_data = False
                try:
                    if smtp is None:
                        smtp = smtplib.SMTP("127.0.0.1", self.dep.ports["gateway_smtp"],
                                            timeout=10)
                        smtp.ehlo("sender.example")
                    smtp.mail("alice@sender.example")
                    smtp.rcpt("bob@example.com")
                    in_data = True
                    code, _ = smtp.data(wire)
                    if code != 250:
                        raise smtplib.SMTPDataError(code, b"refused")
                    self.accepted.append(tag)
                    i += 1
                except (OSError, smtplib.SMTPException):
                    if in_data:
                        # The gateway may have stored it and died before its 250 reached
                        # us: an SMTP client cannot know, and sends again (RFC 5321 6.1).
                        self.ambiguous.add(tag)
                    # refused, reset or 4xx: the gateway is down or restarting; try again
                    if smtp is not None:
                        with contextlib.suppress(OSError):
                            smtp.close()
                    smtp = None
                    time.sleep(0.05)
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            if smtp is not None:
                with contextlib.suppress(OSError, smtplib.SMTPException):
                    smtp.quit()


def _tag(content: bytes) -> str:
    return str(message_from_bytes(content)["Message-ID"]).strip("<>").split("@")[0]


class TestCrashRecovery:
    # Bounded by its own deadlines (sending, the sender's join, draining), which add up to
    # more than the suite's default 300 s: on a loaded machine that default cut it short.
    @pytest.mark.timeout(DEADLINE_S + 30 + 180 + 120 + 60)
    def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
            self, deployment: Deployment) -> None:
        """Every accepted message ends quarantined exactly once or delivered downstream."""
        dep = deployment
        rng = random.Random(SEED)
        dep.start()
        sender = Sender(dep)
        sender.start()
        kills = flaps = 0
        deadline = time.monotonic() + DEADLINE_S
        while sender.is_alive() and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 1.5))
            if rng.random() < 0.7:
                os.kill(dep.procs["gateway"].pid, signal.SIGKILL)
                dep.stop("gateway", sig=signal.SIGKILL)
                kills += 1
                dep.start_gateway()
            else:
                if "manager" in dep.procs:
                    dep.stop("manager", sig=rng.choice([signal.SIGTERM, signal.SIGKILL]))
                else:
                    dep.start_manager()
                flaps += 1
        sender.join(timeout=30)
        assert sender.error is None, sender.error
        assert not sender.is_alive(), "the sender did not finish in time"
        if "manager" not in dep.procs:
            dep.start_manager()
        dep.admin(dep.gateway_config, "delivernow")
        dep.admin(dep.manager_config, "delivernow")

        accepted = set(sender.accepted)
        caught = {t for t in accepted if int(t.split("-")[1]) % 2}
        clean = accepted - caught

        def settled() -> bool:
            status = dep.admin(dep.gateway_config, "status")["data"]
            return status["messages_in_queue"] == 0 and status["messages_in_work_queue"] == 0

        try:
            wait_for("the gateway's queues to drain", settled, timeout_s=180, interval_s=0.5)
        except DeploymentError:
            dep.admin(dep.gateway_config, "delivernow")
            wait_for("the gateway's queues to drain", settled, timeout_s=120, interval_s=0.5)

        quarantined = Counter()
        offset = 0
        while True:
            page = dep.admin(dep.manager_config, "quarantine.list",
                             {"limit": 500, "offset": offset})["data"]["messages"]
            if not page:
                break
            quarantined.update(m["subject"].split()[-1] for m in page)
            offset += len(page)
        delivered = Counter(_tag(content) for _, content in dep.delivered())

        assert kills >= 3, f"only {kills} kills happened"
        lost_caught = caught - set(quarantined)
        lost_clean = clean - set(delivered)
        twice = {t: n for t, n in quarantined.items() if n > 1 and t not in sender.ambiguous}
        print(f"\naccepted {len(accepted)}/{MESSAGES}; caught {len(caught)}, quarantined "
              f"{len(caught & set(quarantined))}; clean {len(clean)}, delivered "
              f"{len(clean & set(delivered))} (delivered twice: "
              f"{sum(1 for n in delivered.values() if n > 1)}); resent after a lost 250: "
              f"{len(sender.ambiguous)}; gateway kills {kills}, manager flaps {flaps}")
        assert len(accepted) == MESSAGES
        assert not lost_caught, f"lost {len(lost_caught)} caught messages: {sorted(lost_caught)[:5]}"
        assert not lost_clean, f"lost {len(lost_clean)} clean messages: {sorted(lost_clean)[:5]}"
        assert not twice, f"quarantined more than once: {dict(list(twice.items())[:5])}"
        assert set(quarantined) <= caught and set(delivered) <= clean
