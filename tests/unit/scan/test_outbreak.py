"""Tests for pvoq.scan.outbreak and pvoq.scan.rescan: rules file, threat levels, rescans."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from scanhelpers import message, with_attachment

from pvoq.config.model import OutbreakSettings, ScanSettings
from pvoq.cpq.transfer import RescanNotice
from pvoq.scan.antivirus import EICAR, EicarEngine
from pvoq.scan.message import ScanMessage
from pvoq.scan.outbreak import OTHER, VIRAL, RulesError, RulesFile, parse_rules
from pvoq.scan.pipeline import OUTBREAK_FILTERS, Pipeline
from pvoq.scan.rescan import (
    DELETE,
    EXTEND,
    RELEASE,
    NoticeOutbox,
    OutbreakCopies,
    OutbreakCopy,
    decide,
    notice,
)

PAYLOAD = b"MZ fake dropper"
RULES = {"version": "7", "rules": [
    {"id": "OF-URL", "description": "Parcel phishing", "threat_level": 4,
     "urls": ["parcel.example/track"]},
    {"id": "OF-EXE", "description": "Dropper wave", "threat_level": 3,
     "attachment_extensions": [".scr"]},
    {"id": "OF-TYPE", "threat_level": 5, "attachment_types": ["application/x-msdownload"]},
    {"id": "OF-HASH", "threat_level": 2,
     "attachment_sha256": [hashlib.sha256(PAYLOAD).hexdigest()]},
]}


def rules_file(tmp_path: Path, rules: dict[str, object] = RULES) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))
    return path


def pipeline_for(path: Path, **outbreak: object) -> Pipeline:
    return Pipeline(ScanSettings(outbreak=OutbreakSettings(rules_file=path, **outbreak)))  # type: ignore[arg-type]


class TestRules:
    def test_each_matcher(self) -> None:
        """URL host and path, attachment extension, type and SHA-256 each match their rule."""
        rules = parse_rules(json.dumps(RULES))
        cases = {
            "OF-URL": message(body="http://www.parcel.example/track?id=1"),
            "OF-EXE": with_attachment(b"x", filename="Photo.SCR"),
            "OF-TYPE": with_attachment(b"x", filename="a.bin", subtype="x-msdownload"),
            "OF-HASH": with_attachment(PAYLOAD, filename="a.dat"),
        }
        found = {rid: [r.id for r, _ in rules.matches(ScanMessage(body))]
                 for rid, body in cases.items()}
        assert found == {rid: [rid] for rid in cases}
        assert rules.matches(ScanMessage(message(body="http://parcel.example/other"))) == []

    def test_category_defaults(self) -> None:
        """Attachment rules are viral by default, URL rules other threats."""
        rules = {r.id: r.category for r in parse_rules(json.dumps(RULES)).rules}
        assert rules == {"OF-URL": OTHER, "OF-EXE": VIRAL, "OF-TYPE": VIRAL, "OF-HASH": VIRAL}

    @pytest.mark.parametrize(("rule", "words"), [
        ({"id": "A", "threat_level": 6, "urls": ["x"]}, "threat_level must be an integer"),
        ({"id": "A", "threat_level": True, "urls": ["x"]}, "threat_level must be an integer"),
        ({"id": "A", "threat_level": 3}, "no matcher"),
        ({"threat_level": 3, "urls": ["x"]}, "missing id"),
        ({"id": "A", "threat_level": 3, "attachment_sha256": ["abc"]}, "not a SHA-256"),
        ({"id": "A", "threat_level": 3, "urls": "x"}, "urls must be a list"),
        ({"id": "A", "threat_level": 3, "urls": ["x"], "category": "bad"}, "category"),
    ])
    def test_bad_rules_are_refused(self, rule: dict[str, object], words: str) -> None:
        """A malformed rule is refused with a message naming what is wrong."""
        with pytest.raises(RulesError, match=words):
            parse_rules(json.dumps({"rules": [rule]}))

    def test_reload_when_changed_and_keep_on_error(self, tmp_path: Path) -> None:
        """The file is re-read when it changes; a bad version is refused and the old stays."""
        path = rules_file(tmp_path)
        rf = RulesFile(path)
        assert (rf.loaded, rf.changed(), rf.current.version) == (True, False, "7")
        path.write_text(json.dumps({"version": "8", "rules": RULES["rules"][:1]}))  # type: ignore[index]
        os.utime(path, ns=(1, 1))
        assert rf.changed() and rf.reload()
        assert [r.id for r in rf.current.rules] == ["OF-URL"]
        path.write_text("{not json")
        os.utime(path, ns=(2, 2))
        with pytest.raises(RulesError, match="not JSON"):
            rf.reload()
        assert rf.current.version == "8" and not rf.changed()


class TestOutbreakStage:
    def test_at_or_above_threshold_is_quarantined_with_retention(self, tmp_path: Path) -> None:
        """The highest matching rule decides; its category sets the retention."""
        pipeline = pipeline_for(rules_file(tmp_path), quarantine_threat_level=3,
                                retention_viral_seconds=100, retention_other_seconds=10)
        body = with_attachment(b"x", filename="a.scr", text="http://parcel.example/track")
        (v,) = pipeline.run(body).verdicts
        pipeline.close()
        assert (v.stage, v.quarantine, v.reason) == (OUTBREAK_FILTERS, "Outbreak",
                                                     "VOF rule:OF-URL")
        assert (v.threat_level, v.retention_s) == (4, 10)
        assert v.metadata()["retention_s"] == 10

    def test_below_threshold_passes_but_is_recorded(self, tmp_path: Path) -> None:
        """A rule below the threshold does not quarantine; the trace records the hit."""
        pipeline = pipeline_for(rules_file(tmp_path), quarantine_threat_level=3)
        result = pipeline.run(with_attachment(PAYLOAD, filename="a.dat"))
        pipeline.close()
        assert result.verdicts == []
        assert result.trace[-1].hits == ("VOF rule:OF-HASH level 2",)


class TestRescan:
    def copy(self) -> OutbreakCopy:
        return OutbreakCopy(mid=12, transfer_id="q-SN-12-abc", sender="a@b", recipients=["c@d"],
                            rule="OF-URL", threat_level=4, quarantined_at=1000.0,
                            retention_s=10.0)

    def test_release_when_no_rule_matches(self) -> None:
        """A copy no rule matches any more is released, saying which rule stopped matching."""
        rules = parse_rules(json.dumps({"version": "9", "rules": RULES["rules"][1:]}))  # type: ignore[index]
        d = decide(self.copy(), message(body="http://parcel.example/track"), rules,
                   threshold=3, retention_viral_s=100, retention_other_s=10)
        assert (d.action, d.mid) == (RELEASE, 12)
        assert d.reason == ("VOF rule:OF-URL no longer matches at threat level >= 3 "
                            "(rules version 9)")

    def test_extend_when_a_rule_still_matches(self) -> None:
        """A copy a rule still matches is kept, for that rule's category retention."""
        d = decide(self.copy(), with_attachment(b"x", filename="a.scr"),
                   parse_rules(json.dumps(RULES)), threshold=3, retention_viral_s=100,
                   retention_other_s=10)
        assert (d.action, d.rule, d.retention_s) == (EXTEND, "OF-EXE", 100)

    def test_delete_when_antivirus_now_finds_a_virus(self) -> None:
        """A copy anti-virus now flags is to be deleted from Outbreak."""
        d = decide(self.copy(), with_attachment(EICAR), parse_rules(json.dumps(RULES)),
                   threshold=3, retention_viral_s=100, retention_other_s=10,
                   engine=EicarEngine())
        assert (d.action, d.reason) == (DELETE, "a/v verdict:VIRAL Eicar-Test-Signature")

    def test_a_copy_cut_before_its_entry_leaves_no_body(self, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
        """A failed entry write removes the copy's body; a body left by a crash between the
        two writes is removed at the next start."""
        import errno

        import pvoq.scan.rescan as rescan

        copies = OutbreakCopies(tmp_path / "copies")
        real = rescan.atomic_write

        def entry_fails(path: Path, data: bytes, **kw: object) -> None:
            if path.suffix == ".json":
                raise OSError(errno.ENOSPC, "No space left on device")
            real(path, data, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(rescan, "atomic_write", entry_fails)
        with pytest.raises(OSError):
            copies.keep(self.copy(), b"body")
        monkeypatch.undo()
        assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == []
        (tmp_path / "copies" / "13.eml").write_bytes(b"crash")  # as a SIGKILL leaves it
        copies.keep(self.copy(), b"body")
        again = OutbreakCopies(tmp_path / "copies")
        assert again.orphans_removed == 1
        assert sorted(p.name for p in (tmp_path / "copies").iterdir()) == ["12.eml", "12.json"]

    def test_copies_and_notices_are_durable_files(self, tmp_path: Path) -> None:
        """Copies survive a restart; a notice names the original transfer and is idempotent."""
        copies = OutbreakCopies(tmp_path / "copies")
        copies.keep(self.copy(), b"body")
        again = OutbreakCopies(tmp_path / "copies")
        assert [c.mid for c in again.all()] == [12] and again.body(12) == b"body"
        d = decide(self.copy(), b"Subject: x\r\n\r\nclean\r\n",
                   parse_rules(json.dumps(RULES)), threshold=3, retention_viral_s=1,
                   retention_other_s=1)
        made = notice(d, self.copy(), hostname="gw1", serial="SN", now=lambda: 5.0)
        meta = made.to_json()
        assert meta["origin"] == {"hostname": "gw1", "serial": "SN", "mid": 12}
        assert (meta["kind"], meta["action"], meta["quarantine_transfer_id"]) == (
            "outbreak_rescan", RELEASE, "q-SN-12-abc")
        assert RescanNotice.from_json(meta) == made
        outbox = NoticeOutbox(tmp_path / "notices")
        outbox.put(made)
        assert NoticeOutbox(tmp_path / "notices").pending() == [made]
        outbox.done(made.transfer_id)
        assert outbox.pending() == []
        assert again.forget(12) and not again.forget(12) and again.all() == []


class TestKeeperReadsOnlyWhatItKeeps:
    def test_the_body_is_read_only_for_an_outbreak_verdict(self, tmp_path: Path) -> None:
        """A message quarantined for another reason is not read back from the spool just
        to be offered to the outbreak copies (a body may be tens of MB)."""
        from pvoq.maillog import MailLog
        from pvoq.scan.keeper import OutbreakKeeper
        from pvoq.scan.pipeline import CONTENT_FILTERS, OUTBREAK_FILTERS
        from pvoq.scan.verdict import Verdict

        reads: list[int] = []

        def read() -> bytes:
            reads.append(1)
            return b"Subject: x\r\n\r\nbody\r\n"

        keeper = OutbreakKeeper(tmp_path, MailLog(tmp_path / "logs", appliance="gateway gw",
                                                  serial="SN"), hostname="gw", serial="SN")
        common = dict(transfer_id="t1", sender="a@b.c", recipients=["d@e.f"])
        keeper.keep(mid=1, verdicts=[Verdict(CONTENT_FILTERS, "Policy", "content filter:x")],
                    body=read, **common)  # type: ignore[arg-type]
        assert reads == [] and keeper.copies.all() == []
        keeper.keep(mid=2, verdicts=[Verdict(OUTBREAK_FILTERS, "Outbreak", "VOF rule:R1")],
                    body=read, **common)  # type: ignore[arg-type]
        assert reads == [1] and [c.mid for c in keeper.copies.all()] == [2]
