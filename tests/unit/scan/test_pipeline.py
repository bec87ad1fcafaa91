"""Tests for pvoq.scan.pipeline: content filters, antivirus, outbreak filters, resume."""

from __future__ import annotations

import re
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from pvoq.config.model import ContentFilter, ScanSettings
from pvoq.scan.pipeline import (
    ANTIVIRUS,
    CONTENT_FILTERS,
    EICAR,
    OUTBREAK_FILTERS,
    STAGES,
    Pipeline,
    ScanError,
    Verdict,
)

CONFIDENTIAL = ContentFilter("confidential_subject", "Subject",
                             re.compile(r"(?i)\bconfidential\b"), "Policy")
OUTBREAK_URLS = ("bad.example/phish", "evil.test")


def settings(**changes: object) -> ScanSettings:
    """Scan settings with one Subject filter and two outbreak rules, plus *changes*."""
    base = dict(content_filters=(CONFIDENTIAL,), antivirus_enabled=True, outbreak_enabled=True,
                outbreak_urls=OUTBREAK_URLS)
    base.update(changes)
    return ScanSettings(**base)  # type: ignore[arg-type]


def message(subject: str = "Lunch", body: str = "See you at noon.", *,
            headers: dict[str, str] | None = None) -> bytes:
    """A plain-text message with CRLF line ends."""
    lines = ["From: alice@example.org", "To: bob@example.com", f"Subject: {subject}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def with_attachment(payload: bytes, *, subject: str = "Report") -> bytes:
    """A multipart message carrying *payload* as a base64 attachment."""
    msg = MIMEMultipart()
    msg["From"], msg["To"], msg["Subject"] = "alice@example.org", "bob@example.com", subject
    msg.attach(MIMEText("Please see the attachment."))
    msg.attach(MIMEApplication(payload, Name="file.bin"))
    return msg.as_bytes()


def run(body: bytes, **changes: object) -> list[Verdict]:
    return Pipeline(settings(**changes)).run(body)


def stages_of(verdicts: list[Verdict]) -> list[str]:
    return [v.stage for v in verdicts]


class TestContentFilters:
    def test_subject_match_quarantines_to_policy(self) -> None:
        """A Subject matching a filter's regex gives a Policy verdict naming the filter."""
        (verdict,) = run(message(subject="Confidential: Q3 numbers"))
        assert verdict.stage == CONTENT_FILTERS
        assert verdict.quarantine == "Policy"
        assert verdict.reason == "content filter:confidential_subject"

    def test_no_match(self) -> None:
        """A Subject that does not match gives no verdict."""
        assert run(message(subject="Non-confidentiality is not a word")) == []

    def test_other_header_and_quarantine(self) -> None:
        """A filter can look at any header and name any quarantine."""
        flt = ContentFilter("bulk", "X-Mailer", re.compile("MassMailer"), "Bulk")
        (verdict,) = run(message(headers={"X-Mailer": "MassMailer 2.0"}),
                         content_filters=(flt,))
        assert (verdict.quarantine, verdict.reason) == ("Bulk", "content filter:bulk")

    def test_encoded_subject_is_matched_decoded(self) -> None:
        """An RFC 2047 encoded Subject is matched on its decoded text."""
        subject = Header("Confidential \u2013 Q3 numbers", "utf-8").encode()
        assert "Confidential " not in subject  # as sent by a mail client: encoded-word
        assert stages_of(run(message(subject=subject))) == [CONTENT_FILTERS]

    def test_body_is_not_a_header(self) -> None:
        """A Subject filter does not look at the body."""
        assert run(message(body="This is confidential.")) == []

    def test_failing_filter_fails_closed(self) -> None:
        """A filter that raises makes the scan fail with ScanError, never pass."""
        class Broken:
            pattern = "broken"

            def search(self, _text: str) -> None:
                raise RuntimeError("regex engine exploded")

        flt = ContentFilter("broken", "Subject", Broken(), "Policy")  # type: ignore[arg-type]
        with pytest.raises(ScanError, match=CONTENT_FILTERS):
            run(message(), content_filters=(flt,))


class TestAntivirus:
    def test_eicar_in_body(self) -> None:
        """EICAR in a plain body gives a Virus verdict."""
        (verdict,) = run(message(body=EICAR.decode()))
        assert (verdict.stage, verdict.quarantine) == (ANTIVIRUS, "Virus")
        assert verdict.reason == "a/v verdict:VIRAL"

    def test_eicar_in_base64_attachment(self) -> None:
        """EICAR hidden in a base64 attachment is found after decoding."""
        body = with_attachment(EICAR)
        assert EICAR not in body  # only the decoded part contains it
        assert [(v.stage, v.quarantine) for v in run(body)] == [(ANTIVIRUS, "Virus")]

    def test_disabled(self) -> None:
        """With antivirus disabled EICAR passes this stage."""
        assert run(message(body=EICAR.decode()), antivirus_enabled=False) == []


class TestOutbreakFilters:
    @pytest.mark.parametrize("url", [
        "http://bad.example/phish",
        "https://bad.example/phish/login?id=1",
        "http://www.bad.example/phishing",
        "HTTP://Login.Bad.Example/phish",
        "http://evil.test",
        "https://cdn.evil.test/any/path",
    ])
    def test_listed_url_is_caught(self, url: str) -> None:
        """A URL on a listed host or subdomain, under the rule's path prefix, is an outbreak."""
        (verdict,) = run(message(body=f"Click {url} now"))
        assert (verdict.stage, verdict.quarantine) == (OUTBREAK_FILTERS, "Outbreak")
        assert verdict.reason.startswith("VOF rule:url:")

    def test_reason_names_the_rule(self) -> None:
        """The verdict reason names the rule that matched."""
        (verdict,) = run(message(body="http://a.bad.example/phish"))
        assert verdict.reason == "VOF rule:url:bad.example/phish"

    @pytest.mark.parametrize("url", [
        "http://bad.example/",
        "http://bad.example/other/phish",
        "http://notbad.example/phish",
        "http://bad.example.attacker.test/phish",
        "http://notevil.test/",
    ])
    def test_other_url_passes(self, url: str) -> None:
        """A URL outside the rule's path, or on a host only resembling it, is not caught."""
        assert run(message(body=f"Click {url} now")) == []

    def test_userinfo_and_port_do_not_hide_the_url(self) -> None:
        """A URL's userinfo or port does not hide its host and path from the rules."""
        urls = ["http://user@evil.test/", "https://x:y@login.bad.example/phish",
                "http://bad.example:8080/phish"]
        missed = [u for u in urls if stages_of(run(message(body=f"Click {u} now")))
                  != [OUTBREAK_FILTERS]]
        assert missed == []

    def test_url_in_encoded_part(self) -> None:
        """A URL inside a base64 part is found after decoding."""
        body = with_attachment(b"<a href='http://evil.test/x'>x</a>")
        assert b"evil.test" not in body
        assert stages_of(run(body)) == [OUTBREAK_FILTERS]

    def test_disabled(self) -> None:
        """With outbreak filters disabled listed URLs pass."""
        assert run(message(body="http://evil.test/"), outbreak_enabled=False) == []

    def test_no_rules(self) -> None:
        """Without URL rules nothing is an outbreak."""
        assert run(message(body="http://evil.test/"), outbreak_urls=()) == []


class TestPipeline:
    def test_clean_message(self) -> None:
        """A clean message gives no verdicts."""
        assert run(message()) == []

    def test_two_stages_give_two_verdicts(self) -> None:
        """A message caught by two stages yields both verdicts, in pipeline order."""
        verdicts = run(message(subject="confidential", body=EICAR.decode()))
        assert stages_of(verdicts) == [CONTENT_FILTERS, ANTIVIRUS]
        assert [v.quarantine for v in verdicts] == ["Policy", "Virus"]

    def test_all_stages(self) -> None:
        """A message caught by every stage yields one verdict per stage."""
        body = message(subject="confidential", body=f"{EICAR.decode()} http://evil.test/")
        assert stages_of(run(body)) == list(STAGES)

    def test_resume_after_content_filters(self) -> None:
        """Resuming after content filters skips them but still runs antivirus."""
        body = message(subject="confidential", body=EICAR.decode())
        verdicts = Pipeline(settings()).run(body, resume_after=CONTENT_FILTERS)
        assert stages_of(verdicts) == [ANTIVIRUS]

    def test_resume_after_antivirus(self) -> None:
        """Resuming after antivirus runs only the outbreak filters."""
        body = message(subject="confidential", body=f"{EICAR.decode()} http://evil.test/")
        verdicts = Pipeline(settings()).run(body, resume_after=ANTIVIRUS)
        assert stages_of(verdicts) == [OUTBREAK_FILTERS]

    def test_resume_after_last_stage(self) -> None:
        """Resuming after the last stage scans nothing."""
        body = message(subject="confidential", body=f"{EICAR.decode()} http://evil.test/")
        assert Pipeline(settings()).run(body, resume_after=OUTBREAK_FILTERS) == []

    def test_unknown_resume_point_scans_everything(self) -> None:
        """An unknown resume point scans from the first stage (fail closed)."""
        body = message(subject="confidential")
        assert stages_of(Pipeline(settings()).run(body, resume_after="bogus")) == \
            [CONTENT_FILTERS]


class TestResumePoint:
    def test_last_stage_in_pipeline_order(self) -> None:
        """The resume point is the latest of the stages in pipeline order, not list order."""
        assert Pipeline.resume_point([ANTIVIRUS, CONTENT_FILTERS]) == ANTIVIRUS
        assert Pipeline.resume_point([OUTBREAK_FILTERS, CONTENT_FILTERS]) == OUTBREAK_FILTERS

    def test_single_stage(self) -> None:
        """One stage is its own resume point."""
        assert Pipeline.resume_point([CONTENT_FILTERS]) == CONTENT_FILTERS

    def test_none(self) -> None:
        """No known stage means no resume point."""
        assert Pipeline.resume_point([]) is None
        assert Pipeline.resume_point(["bogus"]) is None

    def test_resume_point_round_trip(self) -> None:
        """A released Policy message, resumed at its resume point, is still virus-scanned."""
        body = message(subject="confidential", body=EICAR.decode())
        pipeline = Pipeline(settings())
        first = pipeline.run(body)
        resume = Pipeline.resume_point([v.stage for v in first if v.quarantine == "Policy"])
        assert stages_of(pipeline.run(body, resume_after=resume)) == [ANTIVIRUS]
