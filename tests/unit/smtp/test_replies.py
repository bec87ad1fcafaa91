"""The replies' wire forms (`smtp.replies`, `cpq.replies`): what goes on the wire is pinned
here, byte for byte, so that moving a reply never changes it."""

from __future__ import annotations

import re
from types import ModuleType

import pytest

from pvoq.cpq import replies as cpq
from pvoq.smtp import replies as smtp
from pvoq.smtp.replies import StatusCode

# Every reply and its line on the wire (variable parts filled with the fields shown).
WIRE: dict[str, tuple[StatusCode, dict[str, object], str]] = {
    "ACCESS_DENIED": (smtp.ACCESS_DENIED, {}, "554 5.7.1 Access denied"),
    "HAT_REJECT": (smtp.HAT_REJECT, {"hostname": "gw.example"},
                   "554 5.7.1 Access denied (gw.example)"),
    "TOO_MANY_CONNECTIONS": (smtp.TOO_MANY_CONNECTIONS, {},
                             "421 4.3.2 Too many concurrent connections, try again later"),
    "TOO_MANY_FROM_HOST": (smtp.TOO_MANY_FROM_HOST, {}, "421 4.7.0 Too many concurrent "
                           "connections from your host, try again later"),
    "TOO_MANY_FOR_POLICY": (smtp.TOO_MANY_FOR_POLICY, {},
                            "421 4.7.0 Too many concurrent connections, try again later"),
    "TOO_MANY_RECIPIENTS": (smtp.TOO_MANY_RECIPIENTS, {}, "452 4.5.3 Too many recipients"),
    "TLS_UNAVAILABLE": (smtp.TLS_UNAVAILABLE, {},
                        "454 4.7.0 TLS required but not available, try again later"),
    "WRONG_TLS": (smtp.WRONG_TLS, {}, "554 5.7.1 TLS peer refused"),
    "TOO_MANY_JUNK_COMMANDS": (smtp.TOO_MANY_JUNK_COMMANDS, {},
                               "421 4.7.0 Error: too many junk commands, closing connection"),
    "SESSION_TOO_LONG": (smtp.SESSION_TOO_LONG, {},
                         "421 4.4.2 Error: maximum session time exceeded, closing connection"),
    "STARTTLS_TOO_LATE": (smtp.STARTTLS_TOO_LATE, {}, "421 4.7.0 Error: STARTTLS not "
                          "completed in time, closing connection"),
    "PIPELINING_AFTER_DATA": (smtp.PIPELINING_AFTER_DATA, {},
                              "554 5.5.0 Error: SMTP protocol synchronization"),
    "PIPELINING": (smtp.PIPELINING, {}, "250 PIPELINING"),
    "CHUNKING": (smtp.CHUNKING, {}, "250 CHUNKING"),
    "AUTH": (smtp.AUTH, {}, "250 AUTH"),
    "SENDER_OK": (smtp.SENDER_OK, {}, "250 2.1.0 Sender ok"),
    "RCPT_OK": (smtp.RCPT_OK, {}, "250 2.1.5 Recipient ok"),
    "RCPT_REJECTED": (smtp.RCPT_REJECTED, {}, "550 5.1.0 Address rejected"),
    "RSET_OK": (smtp.RSET_OK, {}, "250 2.0.0 Ok"),
    "NEED_RCPT": (smtp.NEED_RCPT, {}, "503 Error: need RCPT command"),
    "DATA_SYNTAX": (smtp.DATA_SYNTAX, {}, "501 Syntax: DATA"),
    "START_DATA": (smtp.START_DATA, {}, "354 End data with <CR><LF>.<CR><LF>"),
    "LINE_TOO_LONG": (smtp.LINE_TOO_LONG, {}, "500 Line too long (see RFC5321 4.5.3.1.6)"),
    "TOO_MUCH_DATA": (smtp.TOO_MUCH_DATA, {}, "552 Error: Too much mail data"),
    "DATA_OK": (smtp.DATA_OK, {}, "250 OK"),
    "BARE_NEWLINE": (smtp.BARE_NEWLINE, {},
                     "554 5.6.11 Message refused: bare CR or LF in DATA (RFC 5321 2.3.8)"),
    "ACCEPTED": (smtp.ACCEPTED, {"mid": 12}, "250 2.0.0 Ok: Message 12 accepted"),
    "BDAT_SYNTAX": (smtp.BDAT_SYNTAX, {}, "501 5.5.4 Syntax: BDAT <size> [LAST]"),
    "CHUNK_OK": (smtp.CHUNK_OK, {"size": 4096}, "250 2.0.0 4096 octets received"),
    "NEED_MAIL": (smtp.NEED_MAIL, {}, "503 5.5.1 Error: need MAIL command"),
    "CHUNK_AFTER_FAILURE": (smtp.CHUNK_AFTER_FAILURE, {}, "503 5.5.1 Error: a chunk of this "
                            "transaction was refused; chunk thrown away"),
    "DATA_AFTER_BDAT": (smtp.DATA_AFTER_BDAT, {},
                        "503 5.5.1 Error: DATA in a transaction that sent BDAT"),
    "LOCAL_ERROR": (smtp.LOCAL_ERROR, {}, "451 4.3.0 Local error in processing, try again later"),
    "SINK_USER_UNKNOWN": (smtp.SINK_USER_UNKNOWN, {"address": "reject@x.example"},
                          "550 5.1.1 <reject@x.example>: Recipient address rejected: "
                          "User unknown"),
    "SINK_MAILBOX_BUSY": (smtp.SINK_MAILBOX_BUSY, {"address": "defer@x.example"},
                          "450 4.2.1 <defer@x.example>: Mailbox busy, try again later"),
    "SINK_RCPT_OK": (smtp.SINK_RCPT_OK, {}, "250 2.1.5 Ok"),
    "SINK_STORED": (smtp.SINK_STORED, {"n": 3}, "250 2.0.0 Ok: stored as 3"),
    # CPQ
    "XCPQ_KEYWORD": (cpq.XCPQ_KEYWORD, {}, "250 XCPQ 1"),
    "XCPQ_RECEIPTS_KEYWORD": (cpq.XCPQ_RECEIPTS_KEYWORD, {}, "250 XCPQ-RECEIPTS 1000"),
    "META_NEEDS_MAIL": (cpq.META_NEEDS_MAIL, {}, "503 5.5.1 Error: XCPQ META needs MAIL first"),
    "META_SYNTAX": (cpq.META_SYNTAX, {}, "501 5.5.4 Syntax: XCPQ META <base64-chunk>"),
    "XCPQ_SYNTAX": (cpq.XCPQ_SYNTAX, {},
                    "501 5.5.4 Syntax: XCPQ META <base64-chunk> | XCPQ CHECK"),
    "TOO_MUCH_METADATA": (cpq.TOO_MUCH_METADATA, {}, "552 5.3.4 Too much metadata"),
    "META_CHUNK_ACCEPTED": (cpq.META_CHUNK_ACCEPTED, {"n": 2},
                            "250 2.0.0 Metadata chunk 2 accepted"),
    "METADATA_REFUSED": (cpq.METADATA_REFUSED, {"reason": "no XCPQ META was sent"},
                         "554 5.6.0 CPQ metadata refused: no XCPQ META was sent"),
    "READY": (cpq.READY, {"peer": "gw1.example"},
              "250 2.0.0 Ready: centralized PVO quarantines can be enabled for gw1.example"),
    "NOT_READY": (cpq.NOT_READY, {"problems": "a; b"}, "550 5.7.0 Not ready: a; b"),
    "QUARANTINE_TRANSFERS_ONLY": (cpq.QUARANTINE_TRANSFERS_ONLY, {},
                                  "554 5.7.0 The manager accepts only quarantine transfers "
                                  "over CPQ"),
    "CERTIFICATE_MISMATCH": (cpq.CERTIFICATE_MISMATCH, {"origin": "gw1"},
                             "554 5.7.1 Certificate does not match origin gateway gw1"),
    "UNKNOWN_GATEWAY": (cpq.UNKNOWN_GATEWAY, {"origin": "gw1"},
                        "554 5.7.1 Gateway gw1 is not registered on this manager"),
    "SPACE_FULL": (cpq.SPACE_FULL, {}, "452 4.3.1 Quarantine space full, try again later"),
    "NO_SUCH_QUARANTINE": (cpq.NO_SUCH_QUARANTINE, {"name": "Legal"},
                           "451 4.3.0 No central quarantine 'Legal' here (yet)"),
    "MIGRATED": (cpq.MIGRATED, {"mid": 7}, "250 2.0.0 Ok: migrated as MID 7"),
    "ALREADY_STORED": (cpq.ALREADY_STORED, {"transfer_id": "t-1", "mid": 7},
                       "250 2.0.0 Ok: transfer t-1 already stored as MID 7"),
    "NOTICE_NO_SUCH_MESSAGE": (cpq.NOTICE_NO_SUCH_MESSAGE, {"transfer_id": "n-1"},
                               "250 2.0.0 Ok: notice n-1 noted, no such message"),
    "NOTICE_DONE": (cpq.NOTICE_DONE, {"transfer_id": "n-1", "mid": 7, "action": "extend"},
                    "250 2.0.0 Ok: notice n-1: MID 7 extend done"),
    "RELEASES_ONLY": (cpq.RELEASES_ONLY, {},
                      "554 5.7.0 This gateway accepts only releases over CPQ"),
    "MANAGER_ONLY": (cpq.MANAGER_ONLY, {},
                     "554 5.7.1 Only the manager may release mail to this gateway"),
    "NOT_OUR_MANAGER": (cpq.NOT_OUR_MANAGER, {"name": "m2"},
                        "554 5.7.1 m2 is not this gateway's manager"),
    "OTHER_GATEWAY": (cpq.OTHER_GATEWAY, {"target": "gw2", "hostname": "gw1"},
                      "554 5.7.1 This release belongs to gateway gw2, not gw1"),
    "BEING_STORED": (cpq.BEING_STORED, {"transfer_id": "r-1"},
                     "451 4.3.0 Transfer r-1 is being stored, try again later"),
    "ALREADY_RECEIVED": (cpq.ALREADY_RECEIVED, {"transfer_id": "r-1"},
                         "250 2.0.0 Ok: transfer r-1 already received"),
    "RECEIPT_RECORDED": (cpq.RECEIPT_RECORDED, {"transfer_id": "d-1", "mid": 7},
                         "250 2.0.0 Ok: receipt d-1 recorded for MID 7"),
    "RECEIPT_KNOWN": (cpq.RECEIPT_KNOWN, {"transfer_id": "d-1", "mid": 7},
                      "250 2.0.0 Ok: receipt d-1 already recorded for MID 7"),
    "RECEIPT_NO_SUCH_MESSAGE": (cpq.RECEIPT_NO_SUCH_MESSAGE, {"transfer_id": "d-1"},
                                "250 2.0.0 Ok: receipt d-1 noted, no such message"),
    "RECEIPT_OTHER_GATEWAY": (cpq.RECEIPT_OTHER_GATEWAY, {"mid": 7, "origin": "gw2"},
                              "554 5.7.1 MID 7 did not come from gateway gw2"),
    "RECEIPTS_DONE": (cpq.RECEIPTS_DONE, {"transfer_id": "b-1", "recorded": 3, "known": 1,
                                          "unknown": 0, "refused": 1},
                      "250 2.0.0 Ok: receipts b-1: 3 recorded, 1 already recorded, 0 about no "
                      "such message, 1 refused"),
    "RECEIPTS_FAILED": (cpq.RECEIPTS_FAILED, {"transfer_id": "b-1"},
                        "451 4.3.0 Receipts b-1 not recorded, try again later"),
    "RESCAN_VERDICT": (cpq.RESCAN_VERDICT, {"mid": 7, "action": "PASS"},
                       "250 2.0.0 Dry rescan of MID 7: PASS"),
    "RESCAN_DONE": (cpq.RESCAN_DONE, {}, "250 2.0.0 Ok: dry run, nothing kept"),
    "RESCAN_VERDICT_LINE": (cpq.RESCAN_VERDICT_LINE, {"line": "VERDICT e30="},
                            "250 VERDICT e30="),
    "RESCAN_FAILED": (cpq.RESCAN_FAILED, {"mid": 7, "reason": "antivirus: clamd down"},
                      "451 4.3.0 Dry rescan of MID 7 failed: antivirus: clamd down"),
}


def _replies(module: ModuleType) -> dict[str, StatusCode]:
    return {n: v for n, v in vars(module).items() if isinstance(v, StatusCode)}


class TestStatusCode:
    def test_str_is_the_wire_line(self) -> None:
        assert str(StatusCode(554, "5.7.1 Access denied")) == "554 5.7.1 Access denied"
        assert f"{StatusCode(250, 'OK')}" == "250 OK"

    def test_format_fills_the_variable_part(self) -> None:
        assert StatusCode(250, "2.0.0 Ok: stored as {n}").format(n=4) == "250 2.0.0 Ok: stored as 4"

    def test_more_is_a_continuation_line(self) -> None:
        assert StatusCode(250, "PIPELINING").more() == "250-PIPELINING"

    def test_a_reply_is_its_code_and_text(self) -> None:
        code, text = smtp.ACCESS_DENIED
        assert (code, text) == (554, "5.7.1 Access denied") == smtp.ACCESS_DENIED

    def test_accepted(self) -> None:
        assert smtp.accepted(5) == "250 2.0.0 Ok: Message 5 accepted"


class TestWireForms:
    @pytest.mark.parametrize("name", list(WIRE))
    def test_wire_line(self, name: str) -> None:
        reply, fields, line = WIRE[name]
        assert (reply.format(**fields) if fields else str(reply)) == line
        assert line.encode("ascii")  # every reply is ASCII on the wire

    @pytest.mark.parametrize("module", [smtp, cpq], ids=lambda m: m.__name__)
    def test_every_reply_is_pinned(self, module: ModuleType) -> None:
        """Adding a reply means adding its wire line above."""
        for name, reply in _replies(module).items():
            assert name in WIRE and WIRE[name][0] is reply, name

    @pytest.mark.parametrize("module", [smtp, cpq], ids=lambda m: m.__name__)
    def test_codes_and_enhanced_codes_agree(self, module: ModuleType) -> None:
        """A 2xx/3xx/4xx/5xx code; an enhanced code (RFC 3463), if any, of the same class."""
        for name, reply in _replies(module).items():
            assert 200 <= reply.code < 600, name
            enhanced = re.match(r"([245])\.\d{1,3}\.\d{1,3} ", reply.text)
            if enhanced is not None:
                assert enhanced.group(1) == str(reply.code)[0], name
