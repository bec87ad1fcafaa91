"""Tests for pvoq.scan.pipeline: order, verdicts, fail-closed stages, release resume rules."""

from __future__ import annotations

import re
import signal
import threading
import time

import pytest
from scanhelpers import message, with_attachment

from pvoq.config.filterlang import parse_filters
from pvoq.config.model import AntivirusSettings, ContentFilter, ScanSettings
from pvoq.scan.antivirus import EICAR, AvResult, ScannerUnavailable
from pvoq.scan.pipeline import (
    ANTIVIRUS,
    CONTENT_FILTERS,
    DELIVERY,
    MESSAGE_FILTERS,
    ORDER,
    OUTBREAK_FILTERS,
    STAGES,
    Pipeline,
    ScanError,
)
from pvoq.scan.verdict import BOUNCE, DROP, PASS, QUARANTINE, ScanResult

CONFIDENTIAL = ContentFilter("confidential_subject", "Subject",
                             re.compile(r"(?i)\bconfidential\b"), "Policy")
MESSAGE_FILTER_TEXT = 'no_exe: if attachment-filename == "\\.exe$" { quarantine("Policy"); }'


def settings(**changes: object) -> ScanSettings:
    """A message filter, a legacy content filter, the built-in EICAR check, one URL rule."""
    base: dict[str, object] = dict(
        message_filters=tuple(parse_filters(MESSAGE_FILTER_TEXT)),
        content_filters=(CONFIDENTIAL,), outbreak_urls=("evil.test",))
    base.update(changes)
    return ScanSettings(**base)  # type: ignore[arg-type]


def run(body: bytes, *, resume_after: str | None = None, **changes: object) -> ScanResult:
    pipeline = Pipeline(settings(**changes))
    try:
        return pipeline.run(body, resume_after=resume_after)
    finally:
        pipeline.close()


def stages_of(result: ScanResult) -> list[str]:
    return [v.stage for v in result.verdicts]


EVERYTHING = with_attachment(EICAR, filename="tool.exe", subject="confidential",
                             text="see http://evil.test/x")


class TestOrder:
    def test_fixed_printable_order(self) -> None:
        """Message filters, anti-virus, content filters, outbreak filters, then delivery."""
        assert ORDER == (MESSAGE_FILTERS, ANTIVIRUS, CONTENT_FILTERS, OUTBREAK_FILTERS,
                         DELIVERY)
        pipeline = Pipeline(settings())
        rows = pipeline.describe()
        pipeline.close()
        assert [r["stage"] for r in rows] == list(ORDER)
        assert [r["pvo"] for r in rows] == ["P", "V", "P", "O", "-"]
        assert "1 filter: no_exe" in rows[0]["engine"]
        assert "built-in EICAR" in rows[1]["engine"]

    def test_clean_message_passes_every_stage(self) -> None:
        """A clean message passes, and the trace shows every stage it went through."""
        result = run(message())
        assert (result.action, result.verdicts) == (PASS, [])
        assert [t.stage for t in result.trace] == list(STAGES)
        assert all(t.outcome == PASS for t in result.trace)

    def test_caught_by_every_stage_goes_to_every_quarantine(self) -> None:
        """A message caught by several stages yields one verdict per stage, in order."""
        result = run(EVERYTHING)
        assert result.action == QUARANTINE
        assert stages_of(result) == list(STAGES)
        assert [v.quarantine for v in result.verdicts] == ["Policy", "Virus", "Policy",
                                                           "Outbreak"]
        assert result.verdicts[1].reason == "a/v verdict:VIRAL Eicar-Test-Signature"
        assert result.verdicts[3].reason == "VOF rule:url:evil.test"

    def test_drop_ends_the_pipeline(self) -> None:
        """A drop in message filters ends the scan: no stage after it runs, no quarantine."""
        filters = parse_filters('d: if subject == "confidential" { drop(); }')
        result = run(EVERYTHING, message_filters=tuple(filters))
        assert (result.action, result.reason, result.verdicts) == (DROP, "message filter:d", [])
        assert [t.stage for t in result.trace] == [MESSAGE_FILTERS]

    def test_skip_filters_skips_content_filters_only(self) -> None:
        """skip-filters() in message filters skips content filters; AV still runs."""
        filters = parse_filters('s: if true { skip-filters(); }')
        result = run(EVERYTHING, message_filters=tuple(filters))
        assert stages_of(result) == [ANTIVIRUS, OUTBREAK_FILTERS]
        assert [t.outcome for t in result.trace][2] == "skipped"

    def test_modified_message_is_scanned_by_later_stages(self) -> None:
        """A message filter's modification is what the later stages see."""
        filters = parse_filters('s: if true { strip-attachment-by-name("\\.exe$"); }')
        result = run(EVERYTHING, message_filters=tuple(filters))
        assert result.body is not None and b"removed" in result.body
        assert ANTIVIRUS not in stages_of(result)

    def test_unscannable_action(self) -> None:
        """An unscannable verdict follows the configured action."""
        class Unscannable:
            name = "test"

            def describe(self) -> str:
                return "test engine"

            def scan(self, data: bytes) -> AvResult:
                return AvResult("UNSCANNABLE", (), "size limit exceeded")

        outcomes = {}
        for action in ("deliver", "quarantine", "drop", "bounce"):
            p = Pipeline(settings(antivirus=AntivirusSettings(unscannable_action=action)),
                         engine=Unscannable())
            outcomes[action] = p.run(message())
            p.close()
        assert outcomes["deliver"].action == PASS
        assert [v.reason for v in outcomes["quarantine"].verdicts] == [
            "a/v verdict:UNSCANNABLE"]
        assert (outcomes["drop"].action, outcomes["bounce"].action) == (DROP, BOUNCE)


class TestFailClosed:
    def test_engine_down_is_a_temporary_failure(self) -> None:
        """An anti-virus engine that cannot answer fails the scan; it never passes."""
        class Down:
            name = "down"

            def describe(self) -> str:
                return "down"

            def scan(self, data: bytes) -> AvResult:
                raise ScannerUnavailable("clamd unavailable: connection refused")

        pipeline = Pipeline(settings(), engine=Down())
        with pytest.raises(ScanError, match="connection refused") as info:
            pipeline.run(message())
        pipeline.close()
        assert info.value.stage == ANTIVIRUS

    def test_stage_timeout_is_a_temporary_failure(self) -> None:
        """A stage that does not answer within its timeout fails the scan."""
        release = threading.Event()

        class Slow:
            name = "slow"

            def describe(self) -> str:
                return "slow"

            def scan(self, data: bytes) -> AvResult:
                release.wait(10)
                return AvResult("CLEAN")

        pipeline = Pipeline(settings(antivirus=AntivirusSettings(timeout_seconds=0.2)),
                            engine=Slow())
        try:
            with pytest.raises(ScanError, match="antivirus timed out after 0.2s"):
                pipeline.run(message())
        finally:
            release.set()
            pipeline.close()

    def test_a_stage_timed_by_alarm_is_interrupted(self) -> None:
        """In a scanner process's main thread a stage out of time is stopped, not abandoned,
        and the next stage and the next scan run as usual."""
        calls: list[str] = []

        class Stuck:
            name = "stuck"

            def describe(self) -> str:
                return "stuck"

            def scan(self, data: bytes) -> AvResult:
                calls.append("scan")
                if len(calls) == 1:
                    time.sleep(30)  # interrupted by the alarm after 0.2 s
                return AvResult("CLEAN")

        pipeline = Pipeline(settings(antivirus=AntivirusSettings(timeout_seconds=0.2)),
                            engine=Stuck(), alarm_timeouts=True)
        started = time.monotonic()
        with pytest.raises(ScanError, match="antivirus timed out after 0.2s") as info:
            pipeline.run(message())
        assert info.value.stage == ANTIVIRUS and time.monotonic() - started < 5
        assert pipeline.run(message()).action == PASS
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no alarm left armed

    def test_check_that_raises_is_a_temporary_failure(self) -> None:
        """A filter that raises fails the scan with ScanError naming the stage."""
        class Broken:
            pattern = "broken"

            def search(self, _text: str) -> None:
                raise RuntimeError("regex engine exploded")

        flt = ContentFilter("broken", "Subject", Broken(), "Policy")  # type: ignore[arg-type]
        with pytest.raises(ScanError, match="content_filters failed: RuntimeError"):
            run(message(), content_filters=(flt,))

    def test_missing_rules_file_fails_closed(self, tmp_path: object) -> None:
        """A configured outbreak rules file that never loaded fails outbreak scanning."""
        from pathlib import Path

        from pvoq.config.model import OutbreakSettings
        missing = Path(str(tmp_path)) / "absent.json"
        with pytest.raises(ScanError, match="no valid outbreak rules"):
            run(message(), outbreak=OutbreakSettings(rules_file=missing))


class TestReleaseSemantics:
    @pytest.mark.parametrize(("released_from", "runs"), [
        ([MESSAGE_FILTERS], [ANTIVIRUS, CONTENT_FILTERS, OUTBREAK_FILTERS]),
        ([ANTIVIRUS], [CONTENT_FILTERS, OUTBREAK_FILTERS]),
        ([CONTENT_FILTERS], [OUTBREAK_FILTERS]),
        ([OUTBREAK_FILTERS], [ANTIVIRUS]),
        ([MESSAGE_FILTERS, OUTBREAK_FILTERS], [ANTIVIRUS]),
        ([ANTIVIRUS, OUTBREAK_FILTERS], []),
        ([OUTBREAK_FILTERS, MESSAGE_FILTERS, ANTIVIRUS, CONTENT_FILTERS], []),
        (["bogus"], list(STAGES)),
        ([], list(STAGES)),
    ])
    def test_stages_a_release_runs(self, released_from: list[str], runs: list[str]) -> None:
        """A release resumes after its latest stage; an Outbreak release re-runs anti-virus."""
        assert Pipeline.stages_for(Pipeline.resume_point(released_from)) == runs

    def test_resume_point_values(self) -> None:
        """The resume point names the latest stage, plus the stages to run again."""
        assert Pipeline.resume_point([OUTBREAK_FILTERS]) == "outbreak_filters+antivirus"
        assert Pipeline.resume_point([ANTIVIRUS, OUTBREAK_FILTERS]) == "outbreak_filters"
        assert Pipeline.resume_point([ANTIVIRUS, MESSAGE_FILTERS]) == "antivirus"
        assert Pipeline.resume_point(["bogus"]) is None

    def test_unknown_resume_point_scans_everything(self) -> None:
        """An unknown resume point scans from the first stage (fail closed)."""
        assert Pipeline.stages_for("bogus+antivirus") == list(STAGES)
        assert Pipeline.stages_for("antivirus+bogus") == list(STAGES)

    def test_policy_release_is_still_virus_scanned(self) -> None:
        """A message-filter (Policy) release is scanned by anti-virus and caught again there."""
        first = run(EVERYTHING)
        policy = [v.stage for v in first.verdicts if v.stage == MESSAGE_FILTERS]
        again = run(EVERYTHING, resume_after=Pipeline.resume_point(policy))
        assert stages_of(again) == [ANTIVIRUS, CONTENT_FILTERS, OUTBREAK_FILTERS]

    def test_virus_release_is_not_scanned_again(self) -> None:
        """A release from every quarantine it was in quarantines it nowhere again."""
        first = run(EVERYTHING)
        again = run(EVERYTHING, resume_after=Pipeline.resume_point(
            [v.stage for v in first.verdicts]))
        assert (again.action, again.verdicts) == (PASS, [])

    def test_outbreak_release_is_rescanned_by_antivirus(self) -> None:
        """An Outbreak release runs anti-virus again, and only anti-virus."""
        body = with_attachment(EICAR, text="http://evil.test/")
        result = run(body, resume_after=Pipeline.resume_point([OUTBREAK_FILTERS]))
        assert stages_of(result) == [ANTIVIRUS]
        assert [t.stage for t in result.trace] == [ANTIVIRUS]

    def test_describe_prints_the_release_path(self) -> None:
        """`pipeline show` data says what a release from each stage runs."""
        pipeline = Pipeline(settings())
        rows = {r["stage"]: r["release_runs"] for r in pipeline.describe()}
        pipeline.close()
        assert rows[MESSAGE_FILTERS] == [ANTIVIRUS, CONTENT_FILTERS, OUTBREAK_FILTERS, DELIVERY]
        assert rows[ANTIVIRUS] == [CONTENT_FILTERS, OUTBREAK_FILTERS, DELIVERY]
        assert rows[OUTBREAK_FILTERS] == [ANTIVIRUS, DELIVERY]
        assert rows[DELIVERY] == []


class TestPolicies:
    def test_policy_pipeline_overrides_and_shares(self) -> None:
        """A policy's pipeline takes its own switches and filters, the same engine and rules."""
        from pvoq.config.model import MailPolicy

        base = Pipeline(settings())
        policy = MailPolicy("Execs", (re.compile("^ceo@"),), antivirus_enabled=False,
                            content_filter_rules=tuple(parse_filters(
                                'x: if subject == "secret" { quarantine("Policy"); }')))
        execs = base.for_policy(policy)
        try:
            assert (execs.engine, execs.rules) == (base.engine, base.rules)
            result = execs.run(EVERYTHING)
            assert stages_of(result) == [MESSAGE_FILTERS, OUTBREAK_FILTERS]
            assert [f.name for f in execs.content_filters.filters] == ["x"]
        finally:
            base.close()
            execs.close()

    def test_stop_after_and_skip(self) -> None:
        """stop_after ends the run early; skip carries skip-filters() to a later run."""
        pipeline = Pipeline(settings(message_filters=tuple(parse_filters(
            's: if true { skip-filters(); }'))))
        try:
            first = pipeline.run(EVERYTHING, stop_after=MESSAGE_FILTERS)
            assert [t.stage for t in first.trace] == [MESSAGE_FILTERS]
            assert first.skip == (CONTENT_FILTERS,)
            rest = pipeline.run(EVERYTHING, resume_after=MESSAGE_FILTERS, skip=first.skip)
            assert stages_of(rest) == [ANTIVIRUS, OUTBREAK_FILTERS]
        finally:
            pipeline.close()
