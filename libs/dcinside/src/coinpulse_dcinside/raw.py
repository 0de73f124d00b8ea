"""A fetched page (`dc.raw` value, schemas/raw_page.avsc) → the dc.post / dc.comment values the crawler builds from
it, with the crawler's parsers and record builders.

- `list`: one body-less post per post row (what the crawler emits for a post whose view page it could not read, or
  that was deleted before it was viewed);
- `view`: the post (title, body, author, time) when the page is a view; nothing for a deleted-post answer;
- `comment`: the comments, parsed against their post's time (`post_created_ms`: a view's or a list row's
  `created_at` of the same post; a `reg_date` without a year needs it), which the caller supplies.

Only answers with a 2xx status are read (the crawler parses nothing else: 403/429 stop its cycle, a gone post is
taken from what it already had). A page that does not parse gives no record and its alarm (the crawler dead-letters
the same page), a row or comment that does not parse gives an alarm and the others still count. Pure; never raises
for what the page holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from coinpulse_dcinside.base import Alarm, ParseAlarm
from coinpulse_dcinside.comments import parse_comments
from coinpulse_dcinside.list_page import parse_list
from coinpulse_dcinside.pseudonym import Pseudonymizer
from coinpulse_dcinside.records import comment_record, post_record
from coinpulse_dcinside.view_page import ViewPage, parse_view

# the order the crawler fetches a post's pages in within one cycle: its list page, its view page, its comments
FETCH_ORDER = {"list": 0, "view": 1, "comment": 2}


class NeedsPostTime(ValueError):
    """A comment page given without its post's time."""


@dataclass
class PageRecords:
    kind: str  # list | view | comment | other
    gallery: str
    post_no: int | None
    posts: list[dict[str, Any]] = field(default_factory=list)  # dc.post values
    comments: list[dict[str, Any]] = field(default_factory=list)  # dc.comment values
    alarms: list[Alarm] = field(default_factory=list)
    read: bool = True  # False: not an answer the crawler parses (status, kind)


def page_records(value: dict[str, Any], pseudo: Pseudonymizer, fetched_ms: int,
                 post_created_ms: int | None = None) -> PageRecords:
    """The records of one fetched page; `fetched_ms` is its `fetched_at` in epoch ms (the records' fetched_at).
    NeedsPostTime for a comment page without `post_created_ms`."""
    kind, gallery, url, post_no = value.get("kind"), value.get("gallery"), value.get("url") or "", value.get("post_no")
    out = PageRecords(kind if kind in FETCH_ORDER else "other", str(gallery), post_no)
    status, body = value.get("status"), value.get("body") or ""
    if out.kind == "other" or not isinstance(status, int) or not 200 <= status < 300:
        out.read = False
        return out
    if kind == "list":
        page = parse_list(body, url)
        out.alarms += page.alarms
        out.posts = [post_record(out.gallery, r.post_no, r, None, pseudo, url, fetched_ms) for r in page.rows]
        return out
    if post_no is None:
        out.alarms.append(Alarm("missing_field", url, f"{kind} page without post_no"))
        return out
    if kind == "view":
        try:
            view = parse_view(body, url)
        except ParseAlarm as e:
            out.alarms.append(e.alarm)
            return out
        if isinstance(view, ViewPage):
            out.posts = [post_record(out.gallery, post_no, None, view, pseudo, url, fetched_ms)]
        return out
    if post_created_ms is None:
        raise NeedsPostTime(f"comment page of {gallery}/{post_no} without its post's time")
    try:
        comments = parse_comments(body, post_no, post_created_ms, url)
    except ParseAlarm as e:
        out.alarms.append(e.alarm)
        return out
    out.alarms += comments.alarms
    out.comments = [comment_record(out.gallery, c, pseudo, fetched_ms) for c in comments.comments]
    return out
