"""KST (UTC+9, no DST) to UTC; comment dates whose year is missing resolved from the post."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

KST = timezone(timedelta(hours=9), "KST")

_FULL = re.compile(r"^\s*(\d{4})[-.](\d{1,2})[-.](\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")
_SHORT_YEAR = re.compile(r"^\s*(\d{2})\.(\d{1,2})\.(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")
_NO_YEAR = re.compile(r"^\s*(\d{1,2})\.(\d{1,2})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")


def kst_to_utc_ms(dt: datetime) -> int:
    return int(dt.replace(tzinfo=KST).timestamp() * 1000)


def parse_kst(text: str) -> int:
    """`2026-01-05 09:12:33` (or with dots) in KST → epoch milliseconds UTC. ValueError if unreadable."""
    m = _FULL.match(text or "")
    if not m:
        raise ValueError(f"not a full KST timestamp: {text!r}")
    y, mo, d, h, mi, s = (int(x or 0) for x in m.groups())
    return kst_to_utc_ms(datetime(y, mo, d, h, mi, s))


def parse_comment_date(text: str, post_ms: int) -> int:
    """A comment `reg_date` → epoch ms UTC.

    `YY.MM.DD HH:MM:SS` carries its year; `MM.DD HH:MM:SS` does not: the comment cannot precede its post, so it
    is in the post's (KST) year, or the next one when that would put it before the post (a post from late
    December commented in January).
    """
    m = _SHORT_YEAR.match(text or "")
    if m:
        yy, mo, d, h, mi, s = (int(x or 0) for x in m.groups())
        return kst_to_utc_ms(datetime(2000 + yy, mo, d, h, mi, s))
    m = _NO_YEAR.match(text or "")
    if m:
        mo, d, h, mi, s = (int(x or 0) for x in m.groups())
        post_kst = datetime.fromtimestamp(post_ms / 1000, KST).replace(tzinfo=None)
        cand = datetime(post_kst.year, mo, d, h, mi, s)
        # a minute of slack: the site truncates; never roll a same-minute comment a year forward
        if cand < post_kst - timedelta(minutes=1):
            cand = datetime(post_kst.year + 1, mo, d, h, mi, s)
        return kst_to_utc_ms(cand)
    m = _FULL.match(text or "")
    if m:
        return parse_kst(text)
    raise ValueError(f"unreadable comment date {text!r}")
