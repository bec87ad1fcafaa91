"""The CPQ kinds of release receipts and dry rescans, and the verdict a rescan reply carries."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from pvoq.cpq.metadata import decode_transfer, encode_chunks
from pvoq.cpq.rescan import (
    MAX_VERDICT_LINES,
    read_verdict,
    verdict_lines,
    verdict_object,
)
from pvoq.cpq.transfer import (
    MAX_RECEIPTS,
    MetadataError,
    Origin,
    Outcome,
    ReceiptOutcome,
    ReleaseReceipt,
    ReleaseReceipts,
    RescanRequest,
    TransferRecipient,
    parse_transfer,
)


def receipt(**outcome: Any) -> ReleaseReceipt:
    fields: dict[str, Any] = {"rid": 0, "address": "bob@example.com",
                              "outcome": Outcome.DELIVERED, "host": "mx.example.com",
                              "reply": "250 2.0.0 Ok: queued as 1", "at": 1795990000.5}
    fields.update(outcome)
    return ReleaseReceipt(transfer_id="d-GW-SN-23502-0123456789ab",
                          origin=Origin("gw1.example.com", "GW-SN", 23502),
                          release_id="r-1001-5d41402abc4b2a76", entry=1001,
                          outcomes=(ReceiptOutcome(**fields),), manager="mgr.example.com")


def wire(obj: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(obj))


class TestReleaseReceipt:
    def test_round_trip_through_the_wire(self) -> None:
        """A receipt encoded as XCPQ META chunks decodes to the same typed value."""
        sent = receipt()
        got = decode_transfer(encode_chunks(sent.to_json()))
        assert got == sent
        assert isinstance(got, ReleaseReceipt) and got.message == 1001
        assert sent.to_json()["kind"] == "release_receipt"
        assert sent.to_json()["release"] == {"transfer_id": "r-1001-5d41402abc4b2a76",
                                             "entry": 1001}

    def test_a_copy_is_about_the_held_message(self) -> None:
        obj = receipt().to_json()
        obj["release"]["copy_of"] = 1000
        assert parse_transfer(obj).message == 1000  # type: ignore[union-attr]

    def test_what_a_gateway_builds_is_cut_to_what_the_manager_takes(self) -> None:
        """A downstream host's endless reply or name is cut on the gateway, never refused."""
        built = receipt(reply="550 " + "x" * 5000, host="h" * 1000)
        assert len(built.outcomes[0].reply.encode()) <= 512
        assert built.outcomes[0].reply.endswith("...")
        assert len(built.outcomes[0].host) <= 255
        assert parse_transfer(wire(built.to_json())) == built

    @pytest.mark.parametrize(("change", "error"), [
        (lambda o: o["outcomes"][0].update(reply="5" * 600),
         "field outcomes[].reply is longer than 512 octets"),
        (lambda o: o["outcomes"][0].update(outcome="lost"), "unknown outcome 'lost'"),
        (lambda o: o.update(outcomes=[]), "outcomes is empty"),
        (lambda o: o["outcomes"][0].pop("host"), "missing field outcomes[].host"),
        (lambda o: o["release"].pop("entry"), "missing field release.entry"),
        (lambda o: o["outcomes"][0].update(rid=-1), "out of range"),
        (lambda o: o["outcomes"][0].update(address="x" * 300 + "@example.com"),
         "field outcomes[].address"),
    ])
    def test_the_manager_refuses_what_is_out_of_bounds(self, change: Any, error: str) -> None:
        obj = wire(receipt().to_json())
        change(obj)
        with pytest.raises(MetadataError, match=error.replace("[", r"\[").replace("]", r"\]")):
            parse_transfer(obj)


class TestRescanRequest:
    def request(self) -> RescanRequest:
        return RescanRequest(transfer_id="s-MGR-1001-0123456789ab",
                             origin=Origin("gw1.example.com", "GW-SN", 23456, peer="10.0.0.9"),
                             sender="", recipients=(TransferRecipient(0, "bob@example.com"),),
                             entry=1001)

    def test_round_trip(self) -> None:
        sent = self.request()
        assert decode_transfer(encode_chunks(sent.to_json())) == sent
        assert sent.to_json()["rescan"] == {"entry": 1001, "dry_run": True}

    def test_only_dry_runs_exist(self) -> None:
        obj = wire(self.request().to_json())
        obj["rescan"]["dry_run"] = False
        with pytest.raises(MetadataError, match="rescan.dry_run must be true"):
            parse_transfer(obj)


class TestVerdict:
    def verdict(self, hits: int = 1, word: str = "a/v verdict:VIRAL Eicar") -> dict[str, Any]:
        return verdict_object(
            action="quarantine", reason="", unscannable="",
            verdicts=[{"stage": "antivirus", "quarantine": "Virus", "reason": word}],
            stages=[{"stage": "antivirus", "outcome": "quarantine",
                     "hits": [f"{word} {n}" for n in range(hits)], "misses": []}])

    def test_round_trip_in_reply_lines(self) -> None:
        verdict = self.verdict()
        text = "\n".join(["2.0.0 Dry rescan of MID 4: QUARANTINE", *verdict_lines(verdict),
                          "2.0.0 Ok: dry run, nothing kept"])
        assert read_verdict(text) == verdict

    def test_a_huge_verdict_still_fits_one_reply(self) -> None:
        """Hundreds of long hits (words from the mail) are cut until the reply carries it."""
        verdict = self.verdict(hits=500, word="\u00e9" * 2000 + "\r\n250 fake line")
        lines = verdict_lines(verdict, whole=True)
        assert len(lines) <= MAX_VERDICT_LINES
        assert all(len(line) <= 410 for line in lines)
        read = read_verdict("\n".join(lines))
        assert all("\r" not in h and "\n" not in h for h in read["stages"][0]["hits"])

    def test_no_or_bad_verdict_is_an_error(self) -> None:
        with pytest.raises(MetadataError, match="no verdict"):
            read_verdict("2.0.0 Ok")
        with pytest.raises(MetadataError, match="undecodable"):
            read_verdict("VERDICT !!!")
        bad = base64.b64encode(b'{"verdicts": 3}').decode()
        with pytest.raises(MetadataError, match="not an object"):
            read_verdict(f"VERDICT {bad}")


class TestReleaseReceipts:
    def bundle(self, *receipts: ReleaseReceipt) -> ReleaseReceipts:
        return ReleaseReceipts(transfer_id="b-GW-SN-0123456789ab",
                               origin=Origin("gw1.example.com", "GW-SN", 23502),
                               receipts=receipts or (receipt(),))

    def test_round_trip_through_the_wire(self) -> None:
        sent = self.bundle(receipt(), receipt(outcome=Outcome.BOUNCED, reply="550 no"))
        got = decode_transfer(encode_chunks(sent.to_json()))
        assert got == sent
        assert sent.to_json()["kind"] == "release_receipts"
        assert [r["kind"] for r in sent.to_json()["receipts"]] == ["release_receipt"] * 2

    def test_an_empty_list_is_refused(self) -> None:
        obj = self.bundle().to_json()
        obj["receipts"] = []
        with pytest.raises(MetadataError, match="receipts is empty"):
            parse_transfer(wire(obj))

    def test_too_many_receipts_are_refused(self) -> None:
        obj = self.bundle().to_json()
        obj["receipts"] = obj["receipts"] * (MAX_RECEIPTS + 1)
        with pytest.raises(MetadataError, match=f"receipts has more than {MAX_RECEIPTS}"):
            parse_transfer(wire(obj))

    def test_an_entry_of_another_gateway_refuses_the_transfer(self) -> None:
        """Every entry speaks for the gateway whose certificate sent the transfer."""
        obj = self.bundle().to_json()
        obj["receipts"][0]["origin"]["hostname"] = "gw2.example.com"
        with pytest.raises(MetadataError, match="receipts\\[\\].origin.hostname 'gw2"):
            parse_transfer(wire(obj))

    def test_a_malformed_entry_names_its_field(self) -> None:
        obj = self.bundle().to_json()
        del obj["receipts"][0]["outcomes"][0]["reply"]
        with pytest.raises(MetadataError, match="outcomes\\[\\].reply"):
            parse_transfer(wire(obj))
