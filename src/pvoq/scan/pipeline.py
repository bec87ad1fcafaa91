"""The gateway's scanning pipeline, as data: stages, their order, and where a release resumes.

A pipeline is a list of checks (`scan.check.Check`), run in the list's
order; the standard list, built from the configuration by `standard_checks`,
runs in one fixed, printable order (`ORDER`, `Pipeline.describe()`):

    message_filters → antivirus → content_filters → outbreak_filters → delivery

Each stage is a check that returns a `CheckResult` value (pass, quarantine,
drop, bounce, or a modified message) with the rules it hit and missed, under
its own timeout (the check's `timeout_s`). A check that raises, or does not
answer in time, makes the whole scan fail with `ScanError`: a temporary
failure, the message stays in the spool and is scanned again later; it
never passes. (Python cannot stop a
thread: a check that timed out runs on in its worker, one of four; should
all four be stuck, every scan times out and mail is held, never passed.)
A message caught by several stages goes to every quarantine they name; drop
and bounce end the pipeline at once.

Before any stage, the message's MIME structure is checked against the scan
limits (`scan.message.check_structure`: depth, parts, header fields); a
message beyond them, or one the parser fails on in any stage (RecursionError
included), is *unscannable*: no further stage runs and the message gets the
anti-virus stage's `unscannable_action` (AsyncOS's behaviour), with
`ScanResult.unscannable` saying why. It is never a temporary failure. A
message released from the Virus quarantine (a run without the anti-virus
stage) is not caught again: the stages that would parse it are skipped.

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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final, TypeVar

from pvoq.config.model import MailPolicy, ScanSettings
from pvoq.scan.antivirus import (
    EICAR,
    AntivirusCheck,
    AvEngine,
    ClamdEngine,
    EicarEngine,
    unscannable_result,
)
from pvoq.scan.check import Check, Pvo, Stage
from pvoq.scan.filters import FilterSet, legacy_filter
from pvoq.scan.message import Envelope, MimeLimits, ScanMessage, Unscannable, check_structure
from pvoq.scan.outbreak import OutbreakCheck, RulesError, RulesFile, legacy_rules
from pvoq.scan.verdict import (
    BOUNCE,
    DROP,
    PASS,
    QUARANTINE,
    SKIPPED,
    CheckResult,
    ScanError,
    ScanResult,
    StageTrace,
    Verdict,
)

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = [
    "ANTIVIRUS", "CONTENT_FILTERS", "DELIVERY", "EICAR", "MESSAGE_FILTERS", "OUTBREAK_FILTERS",
    "ORDER", "RESCAN_ON_RELEASE", "STAGES", "Check", "Pipeline", "RulesError", "ScanError",
    "ScanResult", "Stage", "StageTrace", "Unscannable", "Verdict", "limits_of",
    "resume_point", "stages_for", "standard_checks", "unscannable_scan",
]

MESSAGE_FILTERS: Final = Stage.MESSAGE_FILTERS
ANTIVIRUS: Final = Stage.ANTIVIRUS
CONTENT_FILTERS: Final = Stage.CONTENT_FILTERS
OUTBREAK_FILTERS: Final = Stage.OUTBREAK_FILTERS
DELIVERY: Final = Stage.DELIVERY
STAGES: tuple[str, ...] = (MESSAGE_FILTERS, ANTIVIRUS, CONTENT_FILTERS, OUTBREAK_FILTERS)
ORDER: tuple[str, ...] = (*STAGES, DELIVERY)
# A release from the key stage also re-runs these earlier stages (AsyncOS:
# released outbreak mail is rescanned by anti-virus).
RESCAN_ON_RELEASE: dict[str, tuple[str, ...]] = {OUTBREAK_FILTERS: (ANTIVIRUS,)}
# The last row of `pipeline show`: not a check, where the pipeline's mail goes.
DELIVERY_ROW: dict[str, Any] = {
    "stage": DELIVERY, "title": "Delivery", "pvo": Pvo.NONE, "quarantine": "-",
    "engine": "per-recipient routes (clean mail) or the.cpq.host (quarantined)",
    "timeout_s": None}

C = TypeVar("C")


def build_engine(settings: ScanSettings) -> AvEngine:
    """clamd when one is configured, else the built-in EICAR check."""
    av = settings.antivirus
    if av.clamd_socket:
        return ClamdEngine(socket_path=av.clamd_socket, timeout_s=av.timeout_seconds)
    if av.clamd_host:
        return ClamdEngine(host=av.clamd_host, port=av.clamd_port, timeout_s=av.timeout_seconds)
    return EicarEngine()


def standard_checks(settings: ScanSettings, *, engine: AvEngine | None = None,
                    rules: RulesFile | None = None) -> list[Check]:
    """The checks of the configuration, in `STAGES` order: message filters, anti-virus
    (*engine*, or the one configured), content filters (the `<content_filter>`s as
    filters, then the filter rules), outbreak filters (*rules*, or the configured file
    and `<url>` rules). A new standard check goes here and in `STAGES`, whose order
    releases follow (`Pipeline.resume_point`)."""
    timeout = settings.stage_timeout_seconds
    av, outbreak = settings.antivirus, settings.outbreak
    return [
        FilterSet(MESSAGE_FILTERS, "message filter", settings.message_filters,
                  skip_on_skip_filters=(CONTENT_FILTERS,), timeout_s=timeout),
        AntivirusCheck(engine or build_engine(settings), enabled=settings.antivirus_enabled,
                       unscannable_action=av.unscannable_action, timeout_s=av.timeout_seconds),
        FilterSet(CONTENT_FILTERS, "content filter",
                  [*(legacy_filter(f) for f in settings.content_filters),
                   *settings.content_filter_rules], timeout_s=timeout),
        OutbreakCheck(rules or RulesFile(outbreak.rules_file,
                                         legacy_rules(settings.outbreak_urls)),
                      enabled=settings.outbreak_enabled,
                      threshold=outbreak.quarantine_threat_level,
                      retention_viral_s=outbreak.retention_viral_seconds,
                      retention_other_s=outbreak.retention_other_seconds, timeout_s=timeout),
    ]


# -- release semantics -------------------------------------------------------------
def resume_point(stages: Iterable[str], order: Sequence[str] = STAGES,
                 rescan_on_release: Mapping[str, tuple[str, ...]] = RESCAN_ON_RELEASE
                 ) -> str | None:
    """Where a release from *stages* continues: the latest of them in *order*, with
    `+stage` for each earlier stage that must run again (*rescan_on_release*).

    `["outbreak_filters"]` → `"outbreak_filters+antivirus"`;
    `["antivirus", "outbreak_filters"]` → `"outbreak_filters"` (a virus release
    is not scanned again); unknown stages only → None (scan everything).
    """
    released = list(stages)
    known = [s for s in order if s in released]
    if not known:
        return None
    last = known[-1]
    again = [r for s in known for r in rescan_on_release.get(s, ())
             if r not in known and r in order and order.index(r) < order.index(last)]
    return "+".join([last, *dict.fromkeys(again)])


def stages_for(resume_after: str | None, order: Sequence[str] = STAGES) -> list[str]:
    """The stages of *order* a message runs through, given its resume point (None: all)."""
    if not resume_after:
        return list(order)
    last, *again = resume_after.split("+")
    if last not in order or any(s not in order for s in again):
        return list(order)  # unknown resume point: scan everything (fail closed)
    after = order[order.index(last) + 1:]
    return [s for s in order if s in after or s in again]


def limits_of(settings: ScanSettings) -> MimeLimits:
    """The MIME limits of the scan settings."""
    return MimeLimits(max_depth=settings.max_mime_depth, max_parts=settings.max_mime_parts,
                      max_headers=settings.max_headers)


def unscannable_scan(action: str, detail: str, *, av: AntivirusCheck | None = None,
                     trace: Sequence[StageTrace] = ()) -> ScanResult:
    """The scan result of a message that could not be scanned: *action* (the
    `unscannable_action`), as the anti-virus stage (*av*, if the pipeline has one)
    decides it for an UNSCANNABLE verdict; *detail* says why."""
    done = av.unscannable(detail=detail) if av else unscannable_result(action, detail=detail)
    result = ScanResult(trace=[*trace, StageTrace(ANTIVIRUS, done.outcome, tuple(done.hits))],
                        unscannable=detail)
    if done.action in (DROP, BOUNCE):
        result.action, result.reason = done.action, done.reason
        return result
    result.verdicts = list(done.verdicts)
    result.action = QUARANTINE if result.verdicts else PASS
    return result


class _StageTimeout(BaseException):
    """Raised by SIGALRM in a stage that ran out of time (not an Exception: checks
    that catch their own errors must not swallow it)."""


def _alarm(signum: int, frame: object) -> None:
    raise _StageTimeout


class Pipeline:
    """A list of checks run in order over one message at a time, folded into a `ScanResult`.

    `Pipeline(settings)` runs the configuration's `standard_checks` (with
    *engine* and *rules* if given: a policy's pipeline shares them);
    `Pipeline(checks=[...])` runs the checks given, in their order. Each
    check runs under its own `timeout_s`: in a thread of a pool (the thread
    is abandoned when out of time), or with *alarm_timeouts* under SIGALRM
    in the calling thread, which must be a process's main thread (a scanner
    process); the check is then interrupted. A check that raises or runs
    out of time fails the scan with `ScanError` naming its stage.

    `run` takes a resume point (`resume_point`: a release resumes after the
    stage that quarantined it, re-running what *rescan_on_release* says),
    a stage to stop after, and stages to skip (skip-filters()).
    `describe` is what `pipeline show` prints: each check's row, with what
    a release from it runs, then delivery.
    """

    def __init__(self, settings: ScanSettings | None = None, *,
                 checks: Sequence[Check] | None = None, engine: AvEngine | None = None,
                 rules: RulesFile | None = None, alarm_timeouts: bool = False,
                 rescan_on_release: Mapping[str, tuple[str, ...]] = RESCAN_ON_RELEASE) -> None:
        if (settings is None) == (checks is None):
            raise TypeError("a pipeline is built from its settings or from its checks")
        if checks is None:
            assert settings is not None
            checks = standard_checks(settings, engine=engine, rules=rules)
        elif engine is not None or rules is not None:
            raise TypeError("engine and rules are for the checks built from settings")
        names = [c.name for c in checks]
        if len(set(names)) != len(names) or DELIVERY in names:
            raise ValueError(f"stage names must be distinct and not {DELIVERY!s}: {names}")
        self.settings = settings
        self.checks: tuple[Check, ...] = tuple(checks)
        self.stages: tuple[str, ...] = tuple(names)
        self.rescan_on_release = dict(rescan_on_release)
        self.alarm_timeouts = alarm_timeouts
        self.limits = limits_of(settings) if settings is not None else MimeLimits()
        self._executor: ThreadPoolExecutor | None = None
        if not alarm_timeouts:  # a scanner process times stages with SIGALRM, no threads
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="scan")

    def close(self) -> None:
        """Let checks in flight finish; a scan started after this fails (and is retried)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    # -- the checks that others share or ask about -------------------------------
    def _find(self, kind: type[C], name: str | None = None) -> C:
        for check in self.checks:
            if isinstance(check, kind) and name in (None, check.name):
                return check
        raise LookupError(f"this pipeline has no {name or kind.__name__} check")

    @property
    def engine(self) -> AvEngine:
        """The anti-virus check's engine (shared by policies' pipelines and rescans)."""
        return self._find(AntivirusCheck).engine

    @property
    def rules(self) -> RulesFile:
        """The outbreak check's rules file (shared by policies' pipelines)."""
        return self._find(OutbreakCheck).rules

    @property
    def message_filters(self) -> FilterSet:
        return self._find(FilterSet, MESSAGE_FILTERS)

    @property
    def content_filters(self) -> FilterSet:
        return self._find(FilterSet, CONTENT_FILTERS)

    def reload_rules(self) -> bool:
        """Re-read the outbreak rules file; True if the rules changed (RulesError if bad)."""
        return self.rules.reload()

    def for_policy(self, policy: MailPolicy) -> Pipeline:
        """The pipeline of a per-recipient policy: its own anti-virus, outbreak and content
        filter settings, the same engine and the same outbreak rules file."""
        s = self.settings
        if s is None:
            raise ValueError("a pipeline built from its checks has no per-recipient policies")
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
                        alarm_timeouts=self.alarm_timeouts,
                        rescan_on_release=self.rescan_on_release)

    # -- release semantics (of the standard order; a pipeline's own in `run`) ------
    @staticmethod
    def resume_point(stages: list[str]) -> str | None:
        """Where a release from *stages* continues in the standard order (`resume_point`).

        `["outbreak_filters"]` → `"outbreak_filters+antivirus"`;
        `["antivirus", "outbreak_filters"]` → `"outbreak_filters"` (a virus release
        is not scanned again); unknown stages only → None (scan everything).
        """
        return resume_point(stages)

    @staticmethod
    def stages_for(resume_after: str | None) -> list[str]:
        """The stages a message runs through, given its resume point (None: all)."""
        return stages_for(resume_after)

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
        stages = stages_for(resume_after, self.stages)
        if stop_after in stages:
            stages = stages[:stages.index(stop_after) + 1]
        try:
            check_structure(body, self.limits)
        except Unscannable as exc:
            return self._unscannable(str(exc), stages, result)
        # Our SIGALRM handler, checked once per message (a tenth of a scanner's time went
        # to `signal.getsignal` when each stage asked).
        if self.alarm_timeouts and signal.getsignal(signal.SIGALRM) is not _alarm:
            signal.signal(signal.SIGALRM, _alarm)
        for check in (self.checks[self.stages.index(s)] for s in stages):
            if check.name in skipped:
                result.trace.append(StageTrace(check.name, SKIPPED))
                continue
            try:
                done = self._timed(check, msg)
            except Unscannable as exc:
                return self._unscannable(str(exc), stages, result)
            result.trace.append(StageTrace(check.name, done.outcome, tuple(done.hits),
                                           tuple(done.misses)))
            for v in done.verdicts:
                (result.duplicates if v.duplicate else result.verdicts).append(v)
            if done.body is not None:
                result.body = done.body
                msg = ScanMessage(done.body, envelope)
            skipped.update(done.skip)
            result.skip = tuple(sorted(skipped))
            if done.action in (DROP, BOUNCE):
                result.action, result.reason = done.action, done.reason
                result.verdicts, result.duplicates = [], []
                return result
        result.action = QUARANTINE if result.verdicts else PASS
        return result

    def _unscannable(self, detail: str, stages: Sequence[str], result: ScanResult
                     ) -> ScanResult:
        """The unscannable action, when the anti-virus stage is among *stages*; else
        (released from Virus, or message filters before a split) the remaining
        stages are skipped and the message passes them."""
        try:
            av: AntivirusCheck | None = self._find(AntivirusCheck)
        except LookupError:
            av = None
        name = av.name if av else ANTIVIRUS
        if name in stages or (av is None and ANTIVIRUS not in self.stages):
            return unscannable_scan(av.unscannable_action if av else "deliver", detail,
                                    av=av, trace=result.trace)
        done = {t.stage for t in result.trace}
        result.trace.extend(StageTrace(s, SKIPPED) for s in stages if s not in done)
        result.unscannable = detail
        result.action = QUARANTINE if result.verdicts else PASS
        return result

    def _timed(self, check: Check, msg: ScanMessage) -> CheckResult:
        stage, timeout = check.name, check.timeout_s
        try:
            if self.alarm_timeouts:
                return self._under_alarm(check, msg, timeout)
            assert self._executor is not None
            future = self._executor.submit(check.check, msg)
            return future.result(timeout=timeout)
        except (TimeoutError, _StageTimeout):  # concurrent.futures' TimeoutError is this one
            raise ScanError(f"{stage} timed out after {timeout:g}s", stage=stage) from None
        except ScanError as exc:
            exc.stage = exc.stage or stage
            raise
        except Unscannable:
            raise
        except RecursionError:
            raise Unscannable("the MIME parser ran out of stack (nesting too deep)") from None
        except Exception as exc:
            raise ScanError(f"{stage} failed: {type(exc).__name__}: {exc}", stage=stage) from exc

    @staticmethod
    def _under_alarm(check: Check, msg: ScanMessage, timeout: float) -> CheckResult:
        """*check* under SIGALRM: `run` has installed `_alarm` for this message."""
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            return check.check(msg)
        finally:  # an alarm in the instant before this still reads as a timeout
            signal.setitimer(signal.ITIMER_REAL, 0)

    # -- what `pipeline show` prints -------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        """One row per check, in order (its `describe()`, its number, and the stages a
        release from it runs), then delivery."""
        rows = []
        for n, check in enumerate(self.checks, 1):
            point = resume_point([check.name], self.stages, self.rescan_on_release)
            rows.append({"n": n, **check.describe(),
                         "release_runs": [*stages_for(point, self.stages), DELIVERY]})
        rows.append({"n": len(rows) + 1, **DELIVERY_ROW, "release_runs": []})
        return rows
