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

from coinpulse_dcinside.base import (
    LONG,
    Alarm,
    BadField,
    ParseAlarm,
    fragment_to_text,
    int_field,
    opt_str,
    scalar,
    show,
    type_name,
)
from coinpulse_dcinside.timeutil import parse_comment_date

_DCCON = re.compile(r"<img[^>]*written_dccon[^>]*>", re.I)
_ATTR = re.compile(r"""\b(alt|title)\s*=\s*(['"])(.*?)\2""", re.I | re.S)
_PAGES = re.compile(r"viewComments\(\s*(\d+)|<em>\s*(\d+)\s*</em>|>\s*(\d+)\s*</a>")
SYSTEM_NAMES = {"관리자", "운영자"}


class MissingField(ValueError):
    """A field the comment cannot do without is absent (or its date is unreadable): alarm kind `missing_field`."""


# alarm kind of a comment that fails, by the exception's exact type; any other exception is `parser_error`
_ALARM_KINDS: dict[type[Exception], str] = {BadField: "bad_field", MissingField: "missing_field"}


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


MAX_COMMENT_PAGE = 100_000


def max_page(pagination: str | None) -> int:
    """The highest page number the pagination links to; BadField for one no post can have."""
    best = 1
    for m in _PAGES.finditer(pagination or ""):
        digits = next(g for g in m.groups() if g)
        if len(digits) > 6 or int(digits) > MAX_COMMENT_PAGE:
            raise BadField(f"pagination links to page {show(digits)}, more than {MAX_COMMENT_PAGE}")
        best = max(best, int(digits))
    return best


def _kind_and_text(c: dict[str, Any]) -> tuple[str, str]:
    memo = opt_str(c, "memo") or ""
    if scalar(c, "vr_type") or scalar(c, "voice"):
        return "voice", ""
    m = _DCCON.search(memo)
    if m:
        attrs = {k.lower(): v for k, _, v in _ATTR.findall(m.group(0))}
        return "dccon", (attrs.get("alt") or attrs.get("title") or "").strip()
    return "text", fragment_to_text(memo)


def _is_deleted(c: dict[str, Any]) -> bool:
    return str(scalar(c, "del_yn") or "N").upper() == "Y" or str(scalar(c, "is_delete") or "0") not in ("0", "")


def _comment(c: dict[str, Any], post_no: int, post_created_ms: int) -> ParsedComment | None:
    """One row of `comments[]`; None for a system/ad row. BadField for a field of the wrong type or range,
    MissingField for a missing one or an unreadable date."""
    name = (opt_str(c, "name") or "").strip()
    uid, ip = opt_str(c, "user_id"), opt_str(c, "ip")
    if name in SYSTEM_NAMES and not ip and not uid:
        return None
    no = int_field(c.get("no"), "no", (1, LONG[1]))
    reg = opt_str(c, "reg_date")
    memo_or_voice = "memo" in c or scalar(c, "vr_type")
    if no is None or not reg or not memo_or_voice:
        raise MissingField("comment without no/reg_date/memo")
    try:
        created = parse_comment_date(reg, post_created_ms)
    except ValueError as e:
        raise MissingField(str(e)) from None
    kind, text = _kind_and_text(c)
    depth = int_field(c.get("depth"), "depth", default=0)
    c_no = int_field(c.get("c_no"), "c_no", (0, LONG[1]), default=0)
    return ParsedComment(
        comment_no=no,
        post_no=post_no,
        parent_no=c_no if depth and depth > 0 and c_no else None,
        uid=uid or None,
        nick=name,
        ip=ip or None,
        kind=kind,
        text=text,
        created_ms=created,
        deleted=_is_deleted(c),
    )


def parse_comments(body: str | bytes, post_no: int, post_created_ms: int, url: str) -> CommentPage:
    """Raises ParseAlarm when the answer is not the comment JSON or a field of the answer itself is unusable
    (`total_cnt`, `comments`, `pagination`); a comment with a missing or mistyped field becomes an alarm on the
    page (its JSON as the fragment) and the others still parse. No input makes it raise anything else."""
    try:
        return _parse_comments(body, post_no, post_created_ms, url)
    except ParseAlarm:
        raise
    except Exception as e:  # noqa: BLE001 - untrusted input: whatever it breaks is a dead letter, never a crash
        raise ParseAlarm(Alarm("parser_error", url, f"post {post_no}: {type(e).__name__}: {e}"[:500])) from None


def _parse_comments(body: str | bytes, post_no: int, post_created_ms: int, url: str) -> CommentPage:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise ParseAlarm(Alarm("bad_json", url, f"post {post_no}: {e}")) from None
    if not isinstance(doc, dict) or "total_cnt" not in doc:
        raise ParseAlarm(Alarm("missing_field", url, f"post {post_no}: no total_cnt"))
    try:
        total = int_field(doc.get("total_cnt"), "total_cnt", (0, LONG[1]), default=0)
        pages = max_page(opt_str(doc, "pagination"))
    except BadField as e:
        raise ParseAlarm(Alarm("bad_field", url, f"post {post_no}: {e}")) from None
    raw = doc.get("comments")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ParseAlarm(Alarm("bad_field", url, f"post {post_no}: comments is {type_name(raw)}, not a list"))
    page = CommentPage(url, total or 0, max_page=pages)
    for c in raw:
        try:
            if not isinstance(c, dict):
                raise BadField(f"comment is {type_name(c)}, not an object")
            parsed = _comment(c, post_no, post_created_ms)
        except Exception as e:  # noqa: BLE001 - one bad comment is a dead letter; the others still parse
            kind = _ALARM_KINDS.get(type(e), "parser_error")
            no = c.get("no") if isinstance(c, dict) else None
            what = f"comment {show(no)}: " if no is not None else ""
            page.alarms.append(Alarm(kind, url, f"post {post_no}: {what}{e}"[:500], _dump(c)))
            continue
        if parsed is None:
            page.skipped_system += 1
        else:
            page.comments.append(parsed)
    return page


def _dump(c: Any) -> str:
    try:
        return orjson.dumps(c).decode()
    except (TypeError, orjson.JSONEncodeError):
        return repr(c)[:100_000]
