"""Tests for pvoq.scan.check: checks as objects, a pipeline built from a list of them,
and the scan vocabulary as StrEnums that equal the strings on the wire."""

from __future__ import annotations

import json
import pickle
import threading
import time
from typing import Any

import pytest
from scanhelpers import message, with_attachment

from pvoq.config.model import ScanSettings
from pvoq.scan import antivirus, outbreak, pipeline, rescan, verdict
from pvoq.scan.antivirus import EICAR, AntivirusCheck, AvVerdict, EicarEngine
from pvoq.scan.check import Check, Pvo, Stage, row
from pvoq.scan.filters import FilterSet
from pvoq.scan.message import ScanMessage
from pvoq.scan.outbreak import OutbreakCategory, OutbreakCheck, RulesFile
from pvoq.scan.pipeline import DELIVERY, DELIVERY_ROW, STAGES, Pipeline, standard_checks
from pvoq.scan.rescan import RescanAction
from pvoq.scan.verdict import (
    DROP,
    MODIFY,
    PASS,
    QUARANTINE,
    SKIPPED,
    CheckAction,
    CheckResult,
    ScanError,
    Verdict,
)


class Fake:
    """A check that records the order it ran in and does what it is told."""

    def __init__(self, name: str, ran: list[str], *, result: CheckResult | None = None,
                 error: Exception | None = None, sleep_s: float = 0.0,
                 timeout_s: float = 5.0) -> None:
        self.name = name
        self.title = f"Fake {name}"
        self.pvo = "P"
        self.quarantine = "Policy"
        self.timeout_s = timeout_s
        self.ran = ran
        self.result = result or CheckResult(misses=[f"{name}: nothing"])
        self.error = error
        self.sleep_s = sleep_s

    def describe(self) -> dict[str, Any]:
        return row(self, f"fake engine of {self.name}")

    def check(self, msg: ScanMessage) -> CheckResult:
        self.ran.append(self.name)
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if self.error is not None:
            raise self.error
        return self.result


def caught(stage: str) -> CheckResult:
    return CheckResult(verdicts=[Verdict(stage, "Policy", f"fake:{stage}")],
                       hits=[f"fake:{stage}"])


class TestCustomPipeline:
    def test_checks_run_in_the_order_given(self) -> None:
        """The pipeline runs its checks in the list's order, whatever their names."""
        ran: list[str] = []
        checks = [Fake("zeta", ran), Fake("alpha", ran, result=caught("alpha")),
                  Fake("mid", ran)]
        p = Pipeline(checks=checks)
        try:
            result = p.run(message())
        finally:
            p.close()
        assert ran == ["zeta", "alpha", "mid"]
        assert [t.stage for t in result.trace] == ["zeta", "alpha", "mid"]
        assert [t.outcome for t in result.trace] == [PASS, QUARANTINE, PASS]
        assert (result.action, [v.reason for v in result.verdicts]) == (
            QUARANTINE, ["fake:alpha"])

    def test_a_check_that_raises_is_a_scan_error_naming_it(self) -> None:
        """A check that raises fails the scan with ScanError; later checks do not run."""
        ran: list[str] = []
        p = Pipeline(checks=[Fake("one", ran), Fake("broken", ran, error=KeyError("x")),
                             Fake("three", ran)])
        try:
            with pytest.raises(ScanError, match="broken failed: KeyError") as info:
                p.run(message())
        finally:
            p.close()
        assert info.value.stage == "broken"
        assert ran == ["one", "broken"]

    @pytest.mark.parametrize("alarm", [False, True])
    def test_each_check_has_its_own_timeout(self, alarm: bool) -> None:
        """A check's timeout_s bounds it, in a thread or under SIGALRM."""
        ran: list[str] = []
        p = Pipeline(checks=[Fake("quick", ran, sleep_s=0.3, timeout_s=5),
                             Fake("slow", ran, sleep_s=3, timeout_s=0.2)],
                     alarm_timeouts=alarm)
        started = time.monotonic()
        try:
            with pytest.raises(ScanError, match="slow timed out after 0.2s") as info:
                p.run(message())
        finally:
            p.close()
        assert info.value.stage == "slow" and time.monotonic() - started < 3

    def test_drop_skip_and_resume_follow_the_list(self) -> None:
        """Resume points, skips and drops work on a custom pipeline's own stages."""
        ran: list[str] = []
        skipper = Fake("a", ran, result=CheckResult(skip=("c",)))
        dropper = Fake("d", ran, result=CheckResult(action=DROP, reason="fake drop"))
        p = Pipeline(checks=[skipper, Fake("b", ran), Fake("c", ran), dropper, Fake("e", ran)],
                     rescan_on_release={"d": ("b",)})
        try:
            result = p.run(message())
            assert (result.action, result.reason) == (DROP, "fake drop")
            assert [(t.stage, t.outcome) for t in result.trace] == [
                ("a", PASS), ("b", PASS), ("c", SKIPPED), ("d", DROP)]
            assert ran == ["a", "b", "d"]
            ran.clear()
            p.run(message(), resume_after="b")
            assert ran == ["c", "d"]  # not skipped now: a's skip was not carried over
            ran.clear()
            p.run(message(), resume_after=p.stages[3] + "+b", stop_after="d")
            assert ran == ["b", "e"]  # d itself does not run again: stop_after ignored
            ran.clear()
            p.run(message(), stop_after="b", skip=("b",))
            assert ran == ["a"]
            ran.clear()
            p.run(message(), resume_after="nonsense")
            assert ran == ["a", "b", "d"]  # fail closed: scanned from the first check
        finally:
            p.close()

    def test_describe_is_each_checks_row_then_delivery(self) -> None:
        """describe() numbers the checks' rows, adds what a release runs, and ends in delivery."""
        ran: list[str] = []
        p = Pipeline(checks=[Fake("x", ran), Fake("y", ran, timeout_s=2)],
                     rescan_on_release={"y": ("x",)})
        rows = p.describe()
        p.close()
        assert rows == [
            {"n": 1, "stage": "x", "title": "Fake x", "pvo": "P", "quarantine": "Policy",
             "engine": "fake engine of x", "timeout_s": 5.0, "release_runs": ["y", DELIVERY]},
            {"n": 2, "stage": "y", "title": "Fake y", "pvo": "P", "quarantine": "Policy",
             "engine": "fake engine of y", "timeout_s": 2, "release_runs": ["x", DELIVERY]},
            {"n": 3, **DELIVERY_ROW, "release_runs": []},
        ]
        assert list(rows[0]) == ["n", "stage", "title", "pvo", "quarantine", "engine",
                                 "timeout_s", "release_runs"]

    def test_construction_is_from_settings_or_checks(self) -> None:
        """Settings and checks are exclusive; stage names are distinct; engine and rules
        only go with settings; a checks-only pipeline has no policies or shared engine."""
        ran: list[str] = []
        with pytest.raises(TypeError):
            Pipeline()
        with pytest.raises(TypeError):
            Pipeline(ScanSettings(), checks=[Fake("a", ran)])
        with pytest.raises(TypeError):
            Pipeline(checks=[Fake("a", ran)], engine=EicarEngine())
        with pytest.raises(ValueError, match="distinct"):
            Pipeline(checks=[Fake("a", ran), Fake("a", ran)])
        with pytest.raises(ValueError, match="distinct"):
            Pipeline(checks=[Fake(DELIVERY, ran)])
        p = Pipeline(checks=[Fake("a", ran)])
        p.close()
        with pytest.raises(LookupError):
            p.engine  # noqa: B018 (the property raises)
        with pytest.raises(ValueError, match="policies"):
            p.for_policy(None)  # type: ignore[arg-type]


class TestStandardChecks:
    def test_the_standard_checks_are_checks_in_stage_order(self) -> None:
        """Filter sets, anti-virus and outbreak implement Check, in STAGES order."""
        checks = standard_checks(ScanSettings(antivirus_enabled=False))
        assert [c.name for c in checks] == list(STAGES)
        assert all(isinstance(c, Check) for c in checks)
        assert [type(c) for c in checks] == [FilterSet, AntivirusCheck, FilterSet,
                                             OutbreakCheck]
        assert [c.pvo for c in checks] == [Pvo.POLICY, Pvo.VIRUS, Pvo.POLICY, Pvo.OUTBREAK]
        p = Pipeline(ScanSettings())
        p.close()
        assert [c.name for c in p.checks] == list(STAGES) == list(p.stages)

    def test_the_standard_checks_rebuilt_by_hand_decide_alike(self) -> None:
        """A pipeline of hand-built checks decides as the one built from settings."""
        settings = ScanSettings(outbreak_urls=("evil.test",))
        by_hand = Pipeline(checks=[
            FilterSet(Stage.MESSAGE_FILTERS, "message filter", ()),
            AntivirusCheck(EicarEngine(), unscannable_action="deliver", timeout_s=5),
            FilterSet(Stage.CONTENT_FILTERS, "content filter", ()),
            OutbreakCheck(RulesFile(None, outbreak.legacy_rules(("evil.test",))),
                          threshold=3, retention_viral_s=1, retention_other_s=2,
                          timeout_s=5)])
        standard = Pipeline(settings)
        body = with_attachment(EICAR, text="http://evil.test/x")
        try:
            mine, theirs = by_hand.run(body), standard.run(body)
        finally:
            by_hand.close()
            standard.close()
        assert mine.trace == theirs.trace
        assert [(v.stage, v.quarantine, v.reason) for v in mine.verdicts] == [
            (v.stage, v.quarantine, v.reason) for v in theirs.verdicts]
        assert mine.verdicts[1].retention_s == 2  # a URL rule: other threats

    def test_a_check_runs_in_a_thread_of_the_pool_by_default(self) -> None:
        """Without alarm timeouts a check runs off the calling thread."""
        seen: list[str] = []

        class Where(Fake):
            def check(self, msg: ScanMessage) -> CheckResult:
                seen.append(threading.current_thread().name)
                return CheckResult()

        p = Pipeline(checks=[Where("w", [])])
        try:
            p.run(message())
        finally:
            p.close()
        assert seen and seen[0].startswith("scan")


class TestVocabulary:
    def test_old_names_are_the_enum_members_and_equal_their_strings(self) -> None:
        """Module-level names stay importable, as the members, equal to the old strings."""
        assert tuple(Stage) == (pipeline.MESSAGE_FILTERS, pipeline.ANTIVIRUS,
                                pipeline.CONTENT_FILTERS, pipeline.OUTBREAK_FILTERS,
                                pipeline.DELIVERY)
        assert pipeline.ANTIVIRUS is Stage.ANTIVIRUS and verdict.DROP is CheckAction.DROP
        assert list(Stage) == ["message_filters", "antivirus", "content_filters",
                               "outbreak_filters", "delivery"]
        assert tuple(CheckAction) == (verdict.PASS, verdict.QUARANTINE, verdict.DROP,
                                      verdict.BOUNCE, MODIFY)
        assert list(CheckAction) == ["pass", "quarantine", "drop", "bounce", "modify"]
        assert tuple(AvVerdict) == (antivirus.CLEAN, antivirus.VIRAL, antivirus.ENCRYPTED,
                                    antivirus.UNSCANNABLE)
        assert list(AvVerdict) == ["CLEAN", "VIRAL", "ENCRYPTED", "UNSCANNABLE"]
        assert tuple(OutbreakCategory) == (outbreak.VIRAL, outbreak.OTHER)
        assert list(OutbreakCategory) == ["viral", "other"]
        assert tuple(RescanAction) == (rescan.RELEASE, rescan.EXTEND, rescan.DELETE)
        assert list(RescanAction) == ["release", "extend", "delete"]

    def test_the_two_virals_are_different_things(self) -> None:
        """An anti-virus verdict and an outbreak category no longer share a name."""
        assert AvVerdict.VIRAL == "VIRAL" and OutbreakCategory.VIRAL_ATTACHMENTS == "viral"
        assert AvVerdict.VIRAL != OutbreakCategory.VIRAL_ATTACHMENTS

    def test_members_travel_as_their_strings(self) -> None:
        """JSON, f-strings and str() give the old strings; pickles come back equal."""
        result = CheckResult(verdicts=[Verdict(Stage.ANTIVIRUS, "Virus", "r")])
        assert json.dumps({"stage": Stage.ANTIVIRUS, "action": result.outcome,
                           Stage.OUTBREAK_FILTERS: OutbreakCategory.OTHER_THREATS}) == (
            '{"stage": "antivirus", "action": "quarantine", "outbreak_filters": "other"}')
        assert f"{Stage.ANTIVIRUS} {AvVerdict.VIRAL}" == "antivirus VIRAL"
        assert type(str(Stage.ANTIVIRUS)) is str and str(Stage.ANTIVIRUS) == "antivirus"
        assert pickle.loads(pickle.dumps(result)) == result
        assert "antivirus" in {Stage.ANTIVIRUS} and Stage.ANTIVIRUS in {"antivirus"}
