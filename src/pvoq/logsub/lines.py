"""What tracking needs from one mail_logs line: its time, and the MID, ICID or DCID it is about.

A line is `<Day> <Mon> <d> <HH:MM:SS> <YYYY> <Level>: <text>` (`maillog.writer`).
`parse` gives a `Parsed` naming the message (MID) or connection (ICID,
DCID) the line belongs to and, for the lines that carry them, the message's
fields: ICID, sender, recipient, Message-ID, subject, where it came from (a
manager's `received from the ESA … (ESA <gateway> MID <n>)`, a gateway's
`received from the SMA … (MID originally <n>)`), and a delivery's DCID.
Lines about nothing tracking shows (`Begin Logfile`, status lines) give None.

Times are read in the manager's local time zone, to the second. Every
string taken from a line came from mail or from a gateway: it is stored as
it is and escaped where it is shown.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass

_LEVELS = frozenset(("Info", "Warning", "Critical", "Debug"))
_MID = re.compile(r"(?:^|\s)MID (\d+)\b")
_CONN = re.compile(r"\b(ICID|DCID) (\d+)\b")
_START = re.compile(r"Start MID (\d+) ICID (\d+)$")
_FROM_ESA = re.compile(r"received from the ESA \S+ for centralized quarantine "
                       r"\(ESA (\S+) MID (\d+)\)")
_FROM_SMA = re.compile(r"received from the SMA \S+ \(MID originally (\d+)\)")
_DELIVERY = re.compile(r"(?:Delivery start|Message done) DCID (\d+) MID (\d+)\b")

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
                                       "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}


@dataclass(slots=True)
class Parsed:
    """One line as tracking indexes it.

    *mid* set: a line about that message (its *text* kept as one of its events);
    otherwise *conn* (`ICID`/`DCID`) and *conn_id*: a line about a connection.
    The other fields are set by the line that carries them.
    """

    time: float
    text: str
    mid: int | None = None
    conn: str | None = None
    conn_id: int | None = None
    icid: int | None = None
    dcid: int | None = None
    sender: str | None = None
    recipient: str | None = None
    message_id: str | None = None
    subject: str | None = None
    origin_host: str | None = None   # the gateway a manager's message came from
    origin_mid: int | None = None    # its MID there; on a gateway, the MID it was released as


@functools.lru_cache(maxsize=256)
def line_time(stamp: str) -> float:
    """The epoch of a mail_logs time (`Mon Nov 30 15:11:05 2026`), in local time."""
    _, month, day, clock, year = stamp.split()
    hour, minute, second = clock.split(":")
    fields = (int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second))
    return time.mktime((*fields, 0, 0, -1))


def parse(line: str) -> Parsed | None:
    """*line* (without its newline) as tracking indexes it; None if it is about nothing
    tracking shows or is not a mail_logs line. (Called for every line indexed: string
    tests first, a regular expression only where one is needed.)"""
    cut = line.find(": ")
    if cut < 0:
        return None
    stamp, _, level = line[:cut].rpartition(" ")
    if level not in _LEVELS:
        return None
    try:
        when = line_time(stamp)
    except (KeyError, ValueError, OverflowError):
        return None
    text = line[cut + 2:]
    if text.startswith("MID "):
        end = text.find(" ", 4)
        number = text[4:end] if end > 0 else text[4:]
        if number.isdigit() and number.isascii():
            return _about_mid(when, text, int(number), text[end + 1:] if end > 0 else "")
    elif text.startswith("Start MID "):
        if (s := _START.match(text)) is not None:
            return Parsed(when, text, mid=int(s.group(1)), icid=int(s.group(2)))
    elif text.startswith(("Delivery start DCID ", "Message done DCID ")) and \
            (d := _DELIVERY.match(text)) is not None:
        return Parsed(when, text, mid=int(d.group(2)), dcid=int(d.group(1)))
    if (m := _MID.search(text)) is not None:
        return Parsed(when, text, mid=int(m.group(1)))
    if (c := _CONN.search(text)) is not None:
        return Parsed(when, text, conn=c.group(1), conn_id=int(c.group(2)))
    return None


def _about_mid(when: float, text: str, mid: int, rest: str) -> Parsed:
    """A line `MID <mid> <rest>`."""
    if rest.startswith("ICID "):
        after = rest[rest.find(" ", 5) + 1:]
        if after.startswith("From: <") and after.endswith(">"):
            return Parsed(when, text, mid=mid, sender=after[7:-1])
        if after.startswith("RID ") and after.endswith(">") and " To: <" in after:
            return Parsed(when, text, mid=mid, recipient=after[after.index(" To: <") + 6:-1])
    elif rest.startswith("Message-ID '") and rest.endswith("'"):
        return Parsed(when, text, mid=mid, message_id=rest[12:-1])
    elif rest.startswith('Subject "') and rest.endswith('"'):
        return Parsed(when, text, mid=mid, subject=rest[9:-1])
    elif rest.startswith("received from the "):
        if (e := _FROM_ESA.match(rest)) is not None:
            return Parsed(when, text, mid=mid, origin_host=e.group(1).lower(),
                          origin_mid=int(e.group(2)))
        if (a := _FROM_SMA.match(rest)) is not None:
            return Parsed(when, text, mid=mid, origin_mid=int(a.group(1)))
    return Parsed(when, text, mid=mid)
