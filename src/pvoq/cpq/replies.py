"""CPQ replies, in one place: what a `cpq_listener` answers beyond plain SMTP.

`StatusCode`s as in `pvoq.smtp.replies` (`str()` is the wire line, `format()`
fills a variable part): the `XCPQ` command and its EHLO keyword, the
readiness check, the metadata refusal, and what the manager's and the
gateway's handlers answer a transfer (docs/cpq.md).
"""

from __future__ import annotations

from pvoq.cpq.metadata import VERSION
from pvoq.cpq.transfer import MAX_RECEIPTS
from pvoq.smtp.replies import StatusCode

# -- the XCPQ command ---------------------------------------------------------------------
XCPQ_KEYWORD = StatusCode(250, f"XCPQ {VERSION}")   # EHLO, offered after STARTTLS only
# EHLO on a manager that takes kind `release_receipts` (at most that many receipts in one).
XCPQ_RECEIPTS_KEYWORD = StatusCode(250, f"XCPQ-RECEIPTS {MAX_RECEIPTS}")
META_NEEDS_MAIL = StatusCode(503, "5.5.1 Error: XCPQ META needs MAIL first")
META_SYNTAX = StatusCode(501, "5.5.4 Syntax: XCPQ META <base64-chunk>")
XCPQ_SYNTAX = StatusCode(501, "5.5.4 Syntax: XCPQ META <base64-chunk> | XCPQ CHECK")
TOO_MUCH_METADATA = StatusCode(552, "5.3.4 Too much metadata")
META_CHUNK_ACCEPTED = StatusCode(250, "2.0.0 Metadata chunk {n} accepted")
METADATA_REFUSED = StatusCode(554, "5.6.0 CPQ metadata refused: {reason}")

# -- XCPQ CHECK: the readiness check behind the gateway's "Enable" button --------------
READY = StatusCode(250, "2.0.0 Ready: centralized PVO quarantines can be enabled for {peer}")
NOT_READY = StatusCode(550, "5.7.0 Not ready: {problems}")   # problems joined by "; "

# -- the manager's cpq_listener: quarantine transfers, rescan notices, release receipts ----
QUARANTINE_TRANSFERS_ONLY = StatusCode(
    554, "5.7.0 The manager accepts only quarantine transfers over CPQ")
CERTIFICATE_MISMATCH = StatusCode(554, "5.7.1 Certificate does not match origin gateway {origin}")
UNKNOWN_GATEWAY = StatusCode(554, "5.7.1 Gateway {origin} is not registered on this manager")
# Temporary: the gateway keeps the message and ships it again later.
SPACE_FULL = StatusCode(452, "4.3.1 Quarantine space full, try again later")
ALREADY_STORED = StatusCode(250, "2.0.0 Ok: transfer {transfer_id} already stored as MID {mid}")
# A migration transfer naming a central quarantine the manager does not have (yet: the
# wizard creates it before the gateways start): temporary, the gateway sends it again.
NO_SUCH_QUARANTINE = StatusCode(451, "4.3.0 No central quarantine {name!r} here (yet)")
MIGRATED = StatusCode(250, "2.0.0 Ok: migrated as MID {mid}")
NOTICE_NO_SUCH_MESSAGE = StatusCode(250, "2.0.0 Ok: notice {transfer_id} noted, no such message")
NOTICE_DONE = StatusCode(250, "2.0.0 Ok: notice {transfer_id}: MID {mid} {action} done")
RECEIPT_RECORDED = StatusCode(250, "2.0.0 Ok: receipt {transfer_id} recorded for MID {mid}")
RECEIPT_KNOWN = StatusCode(250, "2.0.0 Ok: receipt {transfer_id} already recorded for MID {mid}")
RECEIPT_NO_SUCH_MESSAGE = StatusCode(250,
                                     "2.0.0 Ok: receipt {transfer_id} noted, no such message")
RECEIPT_OTHER_GATEWAY = StatusCode(
    554, "5.7.1 MID {mid} did not come from gateway {origin}")
RECEIPTS_DONE = StatusCode(
    250, "2.0.0 Ok: receipts {transfer_id}: {recorded} recorded, {known} already recorded, "
         "{unknown} about no such message, {refused} refused")
RECEIPTS_FAILED = StatusCode(451, "4.3.0 Receipts {transfer_id} not recorded, try again later")

# -- the gateway's cpq_listener: releases from the manager --------------------------------
RELEASES_ONLY = StatusCode(554, "5.7.0 This gateway accepts only releases over CPQ")
MANAGER_ONLY = StatusCode(554, "5.7.1 Only the manager may release mail to this gateway")
NOT_OUR_MANAGER = StatusCode(554, "5.7.1 {name} is not this gateway's manager")
OTHER_GATEWAY = StatusCode(
    554, "5.7.1 This release belongs to gateway {target}, not {hostname}")
# The same transfer retried while its first copy is being stored.
BEING_STORED = StatusCode(451, "4.3.0 Transfer {transfer_id} is being stored, try again later")
ALREADY_RECEIVED = StatusCode(250, "2.0.0 Ok: transfer {transfer_id} already received")
# A dry rescan (kind rescan_request): the verdict in `VERDICT` lines between these two.
RESCAN_VERDICT = StatusCode(250, "2.0.0 Dry rescan of MID {mid}: {action}")
RESCAN_DONE = StatusCode(250, "2.0.0 Ok: dry run, nothing kept")
RESCAN_VERDICT_LINE = StatusCode(250, "{line}")
RESCAN_FAILED = StatusCode(451, "4.3.0 Dry rescan of MID {mid} failed: {reason}")
