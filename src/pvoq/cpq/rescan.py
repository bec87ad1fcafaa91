"""The verdict of a dry rescan, as it travels in a gateway's reply (docs/cpq.md, 5.3c).

A gateway answers a `rescan_request` after the body with a multi-line `250`:
a first line for people (`2.0.0 Dry rescan of MID <n>: <ACTION>`), then the
verdict as compact JSON, base64-encoded and cut into `VERDICT <chunk>` lines,
then `2.0.0 Ok: dry run, nothing kept`. `verdict_lines` builds those lines
from a pipeline's result, `read_verdict` reads them back. Everything in the
verdict (filter names, signature names, what a rule matched: words derived
from the mail) is cut to a bound here, on the gateway, and checked again by
the manager; a page or a terminal must still escape it when showing it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from pvoq.cpq.bounds import MetadataError, fit_text

VERDICT_PREFIX = "VERDICT "
VERDICT_CHARS = 400    # base64 characters per reply line
MAX_VERDICT_LINES = 64
MAX_WORDS = 32         # hits or misses of one stage, verdicts of one message
MAX_WORD = 300         # octets of one hit, miss, reason or detail


def _cut(value: object, limit: int) -> str:
    return fit_text(" ".join(str(value).split()), limit)


def verdict_object(*, action: str, reason: str, unscannable: str,
                   verdicts: list[dict[str, Any]], stages: list[dict[str, Any]],
                   words: int = MAX_WORDS, word: int = MAX_WORD) -> dict[str, Any]:
    """The verdict as JSON: every text cut to *word* octets, every list to *words* items,
    and the whole to what a reply carries (tighter cuts until it fits)."""
    def _word(value: object) -> str:
        return _cut(value, word)
    obj = {
        "action": _word(action), "reason": _word(reason), "unscannable": _word(unscannable),
        "verdicts": [{"stage": _word(v.get("stage", "")), "quarantine":
                      _word(v.get("quarantine", "")), "reason": _word(v.get("reason", "")),
                      "detail": _word(v.get("detail", ""))} for v in verdicts[:words]],
        "stages": [{"stage": _word(s.get("stage", "")), "outcome": _word(s.get("outcome", "")),
                    "hits": [_word(h) for h in list(s.get("hits", ()))[:words]],
                    "misses": [_word(m) for m in list(s.get("misses", ()))[:words]]}
                   for s in stages[:MAX_WORDS]],
    }
    if len(verdict_lines(obj, whole=True)) > MAX_VERDICT_LINES and word > 40:
        return verdict_object(action=action, reason=reason, unscannable=unscannable,
                              verdicts=verdicts, stages=stages, words=max(2, words // 4),
                              word=word // 3)
    return obj


def verdict_lines(verdict: dict[str, Any], *, whole: bool = False) -> list[str]:
    """The `VERDICT <chunk>` lines of a reply carrying *verdict* (at most
    MAX_VERDICT_LINES; *whole*: all of them, to see whether it fits)."""
    raw = base64.b64encode(json.dumps(verdict, separators=(",", ":"),
                                      sort_keys=True).encode()).decode("ascii")
    lines = [VERDICT_PREFIX + raw[i:i + VERDICT_CHARS] for i in range(0, len(raw), VERDICT_CHARS)]
    return lines if whole else lines[:MAX_VERDICT_LINES]


def read_verdict(reply_text: str) -> dict[str, Any]:
    """The verdict a gateway's reply carries; MetadataError when it carries none or a
    malformed one (it is re-bounded as `verdict_object` bounds it)."""
    chunks = [line.strip()[len(VERDICT_PREFIX):] for line in reply_text.splitlines()
              if line.strip().startswith(VERDICT_PREFIX)]
    if not chunks:
        raise MetadataError("the reply carries no verdict")
    try:
        obj = json.loads(base64.b64decode("".join(chunks[:MAX_VERDICT_LINES]), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise MetadataError(f"undecodable verdict ({exc})") from None
    if not isinstance(obj, dict) or not all(isinstance(obj.get(k), list)
                                            for k in ("verdicts", "stages")):
        raise MetadataError("the verdict is not an object with verdicts and stages")
    return verdict_object(
        action=obj.get("action", ""), reason=obj.get("reason", ""),
        unscannable=obj.get("unscannable", ""),
        verdicts=[v for v in obj["verdicts"] if isinstance(v, dict)],
        stages=[s for s in obj["stages"] if isinstance(s, dict)
                and isinstance(s.get("hits", []), list) and isinstance(s.get("misses", []), list)])
