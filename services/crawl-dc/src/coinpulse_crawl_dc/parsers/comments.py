"""The comment endpoint's JSON (`POST /board/comment/`).

Raw fields read: `total_cnt` (int or string), `comments[]` with `no`, `parent`, `user_id`, `name`, `ip` (empty for
members), `reg_date` ("YY.MM.DD HH:MM:SS" or "MM.DD HH:MM:SS"), `nicktype`, `depth` (0 comment, 1 reply), `c_no`
(comment a reply answers), `del_yn`, `is_delete`, `memo` (HTML; dccon is `<img class='written_dccon'>`),
`vr_type` / `voice` (voice replies); `pagination` (HTML with `viewComments(N, ...)` links).
Rows named 관리자 with an empty IP and no uid are system/ad rows: skipped and counted, not comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from coinpulse_crawl_dc.parsers.base import Alarm, ParseAlarm, fragment_to_text
from coinpulse_crawl_dc.timeutil import parse_comment_date

_DCCON = re.compile(r"<img[^>]*written_dccon[^>]*>", re.I)
_ATTR = re.compile(r"""\b(alt|title)\s*=\s*(['"])(.*?)\2""", re.I | re.S)
_PAGES = re.compile(r"viewComments\(\s*(\d+)|<em>\s*(\d+)\s*</em>|>\s*(\d+)\s*</a>")
SYSTEM_NAMES = {"관리자", "운영자"}


@dataclass(frozen=True)
class ParsedComment:
    comment_no: int
    post_no: int
    parent_no: int | None
    uid: str | None
    nick: str
    ip: str | None
    kind: str  # text | dccon | voice
    text: str
    created_ms: int
    deleted: bool


@dataclass
class CommentPage:
    url: str
    total: int
    comments: list[ParsedComment] = field(default_factory=list)
    skipped_system: int = 0
    alarms: list[Alarm] = field(default_factory=list)
    max_page: int = 1


def max_page(pagination: str | None) -> int:
    best = 1
    for m in _PAGES.finditer(pagination or ""):
        best = max(best, int(next(g for g in m.groups() if g)))
    return best


def _kind_and_text(c: dict[str, Any]) -> tuple[str, str]:
    memo = c.get("memo") or ""
    if c.get("vr_type") or c.get("voice"):
        return "voice", ""
    m = _DCCON.search(memo)
    if m:
        attrs = {k.lower(): v for k, _, v in _ATTR.findall(m.group(0))}
        return "dccon", (attrs.get("alt") or attrs.get("title") or "").strip()
    return "text", fragment_to_text(memo)


def _is_deleted(c: dict[str, Any]) -> bool:
    return str(c.get("del_yn") or "N").upper() == "Y" or str(c.get("is_delete") or "0") not in ("0", "")


def parse_comments(body: str | bytes, post_no: int, post_created_ms: int, url: str) -> CommentPage:
    """Raises ParseAlarm when the answer is not the comment JSON; per-comment problems become alarms on the page."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ParseAlarm(Alarm("bad_json", url, f"post {post_no}: {e}")) from None
    if not isinstance(doc, dict) or "total_cnt" not in doc:
        raise ParseAlarm(Alarm("missing_field", url, f"post {post_no}: no total_cnt"))
    raw = doc.get("comments")
    total = int(str(doc.get("total_cnt") or 0) or 0)
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ParseAlarm(Alarm("missing_field", url, f"post {post_no}: comments is not a list"))
    page = CommentPage(url, total, max_page=max_page(doc.get("pagination")))
    for c in raw:
        name = (c.get("name") or "").strip()
        if name in SYSTEM_NAMES and not c.get("ip") and not c.get("user_id"):
            page.skipped_system += 1
            continue
        no = str(c.get("no") or "")
        reg = c.get("reg_date")
        if not no.isdigit() or not reg or ("memo" not in c and not c.get("vr_type")):
            page.alarms.append(
                Alarm("missing_field", url, f"post {post_no}: comment without no/reg_date/memo", orjson.dumps(c).decode())
            )
            continue
        try:
            created = parse_comment_date(reg, post_created_ms)
        except ValueError as e:
            page.alarms.append(Alarm("missing_field", url, f"post {post_no}: {e}", orjson.dumps(c).decode()))
            continue
        kind, text = _kind_and_text(c)
        depth = int(str(c.get("depth") or 0) or 0)
        c_no = str(c.get("c_no") or "")
        page.comments.append(
            ParsedComment(
                comment_no=int(no),
                post_no=post_no,
                parent_no=int(c_no) if depth > 0 and c_no.isdigit() and c_no != "0" else None,
                uid=c.get("user_id") or None,
                nick=name,
                ip=c.get("ip") or None,
                kind=kind,
                text=text,
                created_ms=created,
                deleted=_is_deleted(c),
            )
        )
    return page
