"""The gateway's scanning pipeline, as data: stages, their order, and where a release resumes.

Stages run in one fixed, printable order (`ORDER`, `Pipeline.describe()`):

    message_filters → antivirus → content_filters → outbreak_filters → delivery

Each stage is a check that returns a `CheckResult` value (pass, quarantine,
drop, bounce, or a modified message) with the rules it hit and missed, under
its own timeout. A check that raises, or does not answer in time, makes the
whole scan fail with `ScanError`: a temporary failure, the message stays in
the spool and is scanned again later; it never passes. (Python cannot stop a
thread: a check that timed out runs on in its worker, one of four; should
all four be stuck, every scan times out and mail is held, never passed.)
A message caught by several stages goes to every quarantine they name; drop
and bounce end the pipeline at once.

Release semantics (docs/architecture.md, "Release semantics"): a released
message re-enters the pipeline after the latest stage that quarantined it
(`resume_point`), so it is never quarantined twice for the same reason:

- message_filters (Policy) → resumes at antivirus: still virus-scanned;
- antivirus (Virus)         → resumes at content_filters: not scanned again;
- content_filters (Policy)  → resumes at outbreak_filters;
- outbreak_filters (Outbreak) → anti-virus runs again (`RESCAN_ON_RELEASE`),
  unless the message was also released from Virus; then delivery.

This module never does I/O itself (the anti-virus engine does) and never
decides where mail is delivered: that is the gateway's routing.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any

from pvoq.config.model import MailPolicy, ScanSettings
from pvoq.scan.antivirus import (
    CLEAN,
    EICAR,
    VIRAL,
    AvEngine,
    ClamdEngine,
    EicarEngine,
)
from pvoq.scan.filters import FilterSet, legacy_filter
from pvoq.scan.message import Envelope, ScanMessage
from pvoq.scan.outbreak import VIRAL as VIRAL_CATEGORY
from pvoq.scan.outbreak import RulesError, RulesFile, legacy_rules
from pvoq.scan.verdict import (
    BOUNCE,
    DROP,
    PASS,
    QUARANTINE,
    CheckResult,
    ScanError,
    ScanResult,
    StageTrace,
    Verdict,
)

__all__ = [
    "ANTIVIRUS", "CONTENT_FILTERS", "DELIVERY", "EICAR", "MESSAGE_FILTERS", "OUTBREAK_FILTERS",
    "ORDER", "RESCAN_ON_RELEASE", "STAGES", "Pipeline", "RulesError", "ScanError", "ScanResult",
    "StageTrace", "Verdict",
]

MESSAGE_FILTERS = "message_filters"
ANTIVIRUS = "antivirus"
CONTENT_FILTERS = "content_filters"
OUTBREAK_FILTERS = "outbreak_filters"
DELIVERY = "delivery"
STAGES = (MESSAGE_FILTERS, ANTIVIRUS, CONTENT_FILTERS, OUTBREAK_FILTERS)  # the checks
ORDER = (*STAGES, DELIVERY)
# A release from the key stage also re-runs these earlier stages (AsyncOS:
# released outbreak mail is rescanned by anti-virus).
RESCAN_ON_RELEASE: dict[str, tuple[str, ...]] = {OUTBREAK_FILTERS: (ANTIVIRUS,)}


@dataclass(frozen=True)
class StageInfo:
    name: str
    title: str
    pvo: str          # which of Policy, Virus, Outbreak it decides
    quarantine: str   # where its catches usually go


STAGE_INFO = {
    MESSAGE_FILTERS: StageInfo(MESSAGE_FILTERS, "Message filters", "P", "Policy"),
    ANTIVIRUS: StageInfo(ANTIVIRUS, "Anti-virus", "V", "Virus"),
    CONTENT_FILTERS: StageInfo(CONTENT_FILTERS, "Content filters", "P", "Policy"),
    OUTBREAK_FILTERS: StageInfo(OUTBREAK_FILTERS, "Outbreak filters", "O", "Outbreak"),
    DELIVERY: StageInfo(DELIVERY, "Delivery", "-", "-"),
}


def build_engine(settings: ScanSettings) -> AvEngine:
    """clamd when one is configured, else the built-in EICAR check."""
    av = settings.antivirus
    if av.clamd_socket:
        return ClamdEngine(socket_path=av.clamd_socket, timeout_s=av.timeout_seconds)
    if av.clamd_host:
        return ClamdEngine(host=av.clamd_host, port=av.clamd_port, timeout_s=av.timeout_seconds)
    return EicarEngine()


class _StageTimeout(BaseException):
    """Raised by SIGALRM in a stage that ran out of time (not an Exception: checks
    that catch their own errors must not swallow it)."""


def _alarm(signum: int, frame: object) -> None:
    raise _StageTimeout


class Pipeline:
    def __init__(self, settings: ScanSettings, *, engine: AvEngine | None = None,
                 rules: RulesFile | None = None, alarm_timeouts: bool = False) -> None:
        """*alarm_timeouts*: time each stage with SIGALRM in the calling thread, which
        must be a process's main thread (a scanner process), instead of running it
        in a thread of a pool; the stage is interrupted, not abandoned."""
        self.settings = settings
        self.alarm_timeouts = alarm_timeouts
        self.message_filters = FilterSet(MESSAGE_FILTERS, "message filter",
                                         settings.message_filters,
                                         skip_on_skip_filters=(CONTENT_FILTERS,))
        self.content_filters = FilterSet(
            CONTENT_FILTERS, "content filter",
            [*(legacy_filter(f) for f in settings.content_filters),
             *settings.content_filter_rules])
        self.engine = engine or build_engine(settings)
        self.rules = rules or RulesFile(settings.outbreak.rules_file,
                                        legacy_rules(settings.outbreak_urls))
        self._checks: dict[str, Callable[[ScanMessage], CheckResult]] = {
            MESSAGE_FILTERS: self.message_filters.check,
            ANTIVIRUS: self._antivirus,
            CONTENT_FILTERS: self.content_filters.check,
            OUTBREAK_FILTERS: self._outbreak,
        }
        self.timeouts = {stage: settings.stage_timeout_seconds for stage in STAGES}
        self.timeouts[ANTIVIRUS] = settings.antivirus.timeout_seconds
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="scan")

    def close(self) -> None:
        """Let checks in flight finish; a scan started after this fails (and is retried)."""
        self._executor.shutdown(wait=False)

    def for_policy(self, policy: MailPolicy) -> Pipeline:
        """The pipeline of a per-recipient policy: its own anti-virus, outbreak and content
        filter settings, the same engine and the same outbreak rules file."""
        s = self.settings
        settings = replace(
            s,
            antivirus_enabled=(s.antivirus_enabled if policy.antivirus_enabled is None
                               else policy.antivirus_enabled),
            outbreak_enabled=(s.outbreak_enabled if policy.outbreak_enabled is None
                              else policy.outbreak_enabled),
            content_filters=s.content_filters if policy.content_filter_rules is None else (),
            content_filter_rules=(s.content_filter_rules if policy.content_filter_rules is None
                                  else policy.content_filter_rules))
        return Pipeline(settings, engine=self.engine, rules=self.rules,
                        alarm_timeouts=self.alarm_timeouts)

    # -- release semantics -------------------------------------------------------
    @staticmethod
    def resume_point(stages: list[str]) -> str | None:
        """Where a release from *stages* continues: the latest of them, in pipeline order,
        with `+stage` for each earlier stage that must run again (RESCAN_ON_RELEASE).

        `["outbreak_filters"]` → `"outbreak_filters+antivirus"`;
        `["antivirus", "outbreak_filters"]` → `"outbreak_filters"` (a virus release
        is not scanned again); unknown stages only → None (scan everything).
        """
        known = [s for s in STAGES if s in stages]
        if not known:
            return None
        last = known[-1]
        again = [r for s in known for r in RESCAN_ON_RELEASE.get(s, ())
                 if r not in known and STAGES.index(r) < STAGES.index(last)]
        return "+".join([last, *dict.fromkeys(again)])

    @staticmethod
    def stages_for(resume_after: str | None) -> list[str]:
        """The stages a message runs through, given its resume point (None: all)."""
        if not resume_after:
            return list(STAGES)
        last, *again = resume_after.split("+")
        if last not in STAGES or any(s not in STAGES for s in again):
            return list(STAGES)  # unknown resume point: scan everything (fail closed)
        after = STAGES[STAGES.index(last) + 1:]
        return [s for s in STAGES if s in after or s in again]

    # -- running -------------------------------------------------------------------
    def run(self, body: bytes, *, envelope: Envelope | None = None,
            resume_after: str | None = None, stop_after: str | None = None,
            skip: tuple[str, ...] = ()) -> ScanResult:
        """Scan one message; raise ScanError if any stage cannot decide.

        *stop_after* ends the run after that stage (message filters run on the whole
        message before a per-recipient split; the parts resume after them).
        """
        msg = ScanMessage(body, envelope)
        result = ScanResult()
        skipped: set[str] = set(skip)
        stages = self.stages_for(resume_after)
        if stop_after in stages:
            stages = stages[:stages.index(stop_after) + 1]
        for stage in stages:
            if stage in skipped:
                result.trace.append(StageTrace(stage, "skipped"))
                continue
            check = self._timed(stage, msg)
            result.trace.append(StageTrace(stage, check.outcome, tuple(check.hits),
                                           tuple(check.misses)))
            for v in check.verdicts:
                (result.duplicates if v.duplicate else result.verdicts).append(v)
            if check.body is not None:
                result.body = check.body
                msg = ScanMessage(check.body, envelope)
            skipped.update(check.skip)
            result.skip = tuple(sorted(skipped))
            if check.action in (DROP, BOUNCE):
                result.action, result.reason = check.action, check.reason
                result.verdicts, result.duplicates = [], []
                return result
        result.action = QUARANTINE if result.verdicts else PASS
        return result

    def _timed(self, stage: str, msg: ScanMessage) -> CheckResult:
        timeout = self.timeouts[stage]
        try:
            if self.alarm_timeouts:
                return self._under_alarm(self._checks[stage], msg, timeout)
            future = self._executor.submit(self._checks[stage], msg)
            return future.result(timeout=timeout)
        except (FutureTimeout, _StageTimeout):
            raise ScanError(f"{stage} timed out after {timeout:g}s", stage=stage) from None
        except ScanError as exc:
            exc.stage = exc.stage or stage
            raise
        except Exception as exc:
            raise ScanError(f"{stage} failed: {type(exc).__name__}: {exc}", stage=stage) from exc

    @staticmethod
    def _under_alarm(check: Callable[[ScanMessage], CheckResult], msg: ScanMessage,
                     timeout: float) -> CheckResult:
        if signal.getsignal(signal.SIGALRM) is not _alarm:
            signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return check(msg)
        finally:  # an alarm in the instant before this still reads as a timeout
            signal.setitimer(signal.ITIMER_REAL, 0)

    # -- the checks that are not filter sets ---------------------------------------
    def _antivirus(self, msg: ScanMessage) -> CheckResult:
        if not self.settings.antivirus_enabled:
            return CheckResult(misses=["a/v disabled"])
        found = self.engine.scan(msg.body)
        reason = f"a/v verdict:{found.verdict}"
        if found.verdict == CLEAN:
            return CheckResult(misses=[reason])
        if found.verdict == VIRAL:
            reason = f"{reason} {' '.join(found.names)}"
            return CheckResult(verdicts=[Verdict(ANTIVIRUS, "Virus", reason,
                                                 f"{self.engine.describe()}")], hits=[reason])
        action = self.settings.antivirus.unscannable_action  # ENCRYPTED or UNSCANNABLE
        detail = found.detail or found.verdict.lower()
        if action == "quarantine":
            return CheckResult(verdicts=[Verdict(ANTIVIRUS, "Virus", reason, detail)],
                               hits=[reason])
        if action in (DROP, BOUNCE):
            return CheckResult(action=action, reason=reason, hits=[reason])
        return CheckResult(hits=[f"{reason} (delivered: unscannable_action deliver)"])

    def reload_rules(self) -> bool:
        """Re-read the outbreak rules file; True if the rules changed (RulesError if bad)."""
        return self.rules.reload()

    def _outbreak(self, msg: ScanMessage) -> CheckResult:
        if not self.settings.outbreak_enabled:
            return CheckResult(misses=["outbreak filters disabled"])
        if self.rules.path is not None and not self.rules.loaded:
            raise ScanError(f"no valid outbreak rules: {self.rules.error}")
        ruleset = self.rules.current
        matches = ruleset.matches(msg)
        if not matches:
            return CheckResult(misses=[f"VOF rules version {ruleset.version or '-'}: no match"])
        rule, what = max(matches, key=lambda m: m[0].threat_level)
        settings = self.settings.outbreak
        hits = [f"VOF rule:{r.id} level {r.threat_level}" for r, _ in matches]
        if rule.threat_level < settings.quarantine_threat_level:
            return CheckResult(hits=hits)
        retention = (settings.retention_viral_seconds if rule.category == VIRAL_CATEGORY
                     else settings.retention_other_seconds)
        detail = f"{what}; threat level {rule.threat_level}; {rule.description}".strip("; ")
        return CheckResult(hits=hits, verdicts=[Verdict(
            OUTBREAK_FILTERS, "Outbreak", f"VOF rule:{rule.id}", detail,
            retention_s=retention, threat_level=rule.threat_level)])

    # -- what `pipeline show` prints -------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        s = self.settings
        engines = {
            MESSAGE_FILTERS: _names(self.message_filters.filters),
            ANTIVIRUS: (self.engine.describe() + f"; unscannable: {s.antivirus.unscannable_action}"
                        if s.antivirus_enabled else "disabled"),
            CONTENT_FILTERS: _names(self.content_filters.filters),
            OUTBREAK_FILTERS: self._describe_rules() if s.outbreak_enabled else "disabled",
            DELIVERY: "per-recipient routes (clean mail) or the.cpq.host (quarantined)",
        }
        rows = []
        for n, stage in enumerate(ORDER, 1):
            info = STAGE_INFO[stage]
            resume = self.stages_for(self.resume_point([stage])) if stage in STAGES else []
            rows.append({
                "n": n, "stage": stage, "title": info.title, "pvo": info.pvo,
                "quarantine": info.quarantine, "engine": engines[stage],
                "timeout_s": self.timeouts.get(stage),
                "release_runs": [*resume, DELIVERY] if stage in STAGES else [],
            })
        return rows

    def _describe_rules(self) -> str:
        o = self.settings.outbreak
        current = self.rules.current
        where = str(o.rules_file) if o.rules_file else "configuration <url> rules"
        text = (f"{where}: {len(current.rules)} rules, version {current.version or '-'}; "
                f"quarantine at threat level >= {o.quarantine_threat_level}")
        return text + (f"; ERROR {self.rules.error}" if self.rules.error else "")


def _names(filters: tuple[Any, ...]) -> str:
    if not filters:
        return "no filters"
    return f"{len(filters)} filter{'s' if len(filters) != 1 else ''}: " + ", ".join(
        f.name for f in filters)

