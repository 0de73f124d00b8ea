"""PC list page (`/board/lists/?id=ID&page=N`).

Raw markup the parser reads (one `tr` per row):

- `tr.ub-content` (posts also `.us-post`), attributes `data-no`, `data-type` (icon_notice, icon_pic, icon_txt, ...)
- `td.gall_num` — the post number; 공지 / 설문 / AD / 뉴스 rows are not posts and are skipped (counted)
- `td.gall_subject` — head (말머리), may wrap `.subject_inner`
- `td.gall_tit > a` — title; `a.reply_numbox > span.reply_num` "[N]" or "[N/M]" comment count
- `td.gall_writer` — `data-nick`, `data-uid` (members), `data-ip` (anonymous, "118.235")
- `td.gall_date[title]` — full KST timestamp (the visible text is only HH:MM or YY.MM.DD)
- `td.gall_count` (views, may be "-"), `td.gall_recommend`
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lxml.etree
from lxml.html import HtmlElement

from coinpulse_dcinside.base import LONG, Alarm, BadField, has_class, int_field, parse_html, to_int
from coinpulse_dcinside.timeutil import parse_kst

_ROWS = f"//tr[{has_class('ub-content')}]"
_EMPTY_MARKERS = ("등록된 게시물이 없습니다", "게시물이 없습니다")


@dataclass(frozen=True)
class ListRow:
    post_no: int
    title: str
    head: str | None
    nick: str
    uid: str | None
    ip: str | None
    created_ms: int
    views: int
    recommend: int
    reply_count: int
    data_type: str


@dataclass
class ListPage:
    url: str
    rows: list[ListRow] = field(default_factory=list)
    skipped: int = 0  # notice, survey, ad rows
    alarms: list[Alarm] = field(default_factory=list)
    empty_board: bool = False  # the site says the board has no posts (not an alarm)


def _text(el: HtmlElement) -> str:
    return " ".join("".join(el.itertext()).split())


def _row(tr: HtmlElement, url: str) -> ListRow | Alarm | None:
    num = tr.xpath(f"./td[{has_class('gall_num')}]")
    num_text = _text(num[0]) if num else ""
    if not num_text.isdigit():
        return None  # notice / survey / AD / news
    data_no = tr.get("data-no") or ""
    post_no = int_field(data_no if data_no.isdigit() else num_text, "post number", (1, LONG[1]))
    if post_no is None:  # int_field's "empty" answer: a post row without a number is an alarm, not a skip
        return Alarm("missing_field", url, "post row without a number", lxml.etree.tostring(tr, encoding="unicode"))

    def alarm(detail: str, kind: str = "missing_field") -> Alarm:
        frag = lxml.etree.tostring(tr, encoding="unicode")
        return Alarm(kind, url, f"post {post_no}: {detail}", frag)

    links = tr.xpath(f"./td[{has_class('gall_tit')}]/a[not({has_class('reply_numbox')})]")
    if not links:
        return alarm("no td.gall_tit > a")
    title = _text(links[0])
    if not title:
        return alarm("empty title")
    writer = tr.xpath(f"./td[{has_class('gall_writer')}]")
    if not writer:
        return alarm("no td.gall_writer")
    w = writer[0]
    nick = w.get("data-nick")
    if nick is None:
        return alarm("td.gall_writer without data-nick")
    date = tr.xpath(f"./td[{has_class('gall_date')}]/@title")
    if not date:
        return alarm("no td.gall_date[title]")
    try:
        created = parse_kst(date[0])
    except ValueError as e:
        return alarm(str(e))
    try:
        return _rest(tr, url, post_no, title, w, nick, created)
    except BadField as e:
        return alarm(str(e), "bad_field")


def _rest(tr: HtmlElement, url: str, post_no: int, title: str, w: HtmlElement, nick: str, created: int) -> ListRow:
    head = tr.xpath(f"./td[{has_class('gall_subject')}]")
    head_text = _text(head[0]) if head else ""
    reply = tr.xpath(f"./td[{has_class('gall_tit')}]//span[{has_class('reply_num')}]")
    views = tr.xpath(f"./td[{has_class('gall_count')}]")
    rec = tr.xpath(f"./td[{has_class('gall_recommend')}]")
    return ListRow(
        post_no=post_no,
        title=title,
        head=head_text or None,
        nick=nick,
        uid=w.get("data-uid") or None,
        ip=w.get("data-ip") or None,
        created_ms=created,
        views=to_int(_text(views[0]), what="views") if views else 0,
        recommend=to_int(_text(rec[0]), what="recommend") if rec else 0,
        reply_count=to_int(_text(reply[0]), what="reply count") if reply else 0,
        data_type=tr.get("data-type") or "",
    )


def parse_list(body: str | bytes, url: str) -> ListPage:
    """Rows that parse, rows skipped (notices, ads) and one alarm per row that does not; never raises."""
    page = ListPage(url)
    doc = parse_html(body)
    for tr in doc.xpath(_ROWS):
        try:
            r = _row(tr, url)
        except Exception as e:  # noqa: BLE001 - untrusted markup: a row it breaks is a dead letter, never a crash
            frag = lxml.etree.tostring(tr, encoding="unicode")
            kind = "bad_field" if isinstance(e, BadField) else "parser_error"
            r = Alarm(kind, url, f"list row: {type(e).__name__}: {e}"[:500], frag)
        if r is None:
            page.skipped += 1
        elif isinstance(r, Alarm):
            page.alarms.append(r)
        else:
            page.rows.append(r)
    if not page.rows:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        if any(m in text for m in _EMPTY_MARKERS):
            page.empty_board = True
        elif not page.alarms:
            page.alarms.append(Alarm("list_empty", url, f"no post rows ({page.skipped} non-post rows)"))
    return page
